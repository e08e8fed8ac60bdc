package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shardingFixture is a one-run sharding report whose sharded rows'
// replicas end holding held shards each: the single replica at 100 MiB
// drained, the server-side replicas at 40 MiB, the client-side ones at 60
// MiB (for 4 shards).
func shardingFixture(held ...float64) *shardingReport {
	s := &shardingReport{Date: "2026-12-05T00:00:00Z", Objects: 1200, Replicas: len(held), Shards: 12, Cores: 2}
	s.Rows = shardingRun(0, 1200, 1500, held...)
	return s
}

// shardingRun is run's rows: the single replica draining at rate, the
// sharded ones at sharded.
func shardingRun(run int, rate, sharded float64, held ...float64) []shardingRow {
	rows := []shardingRow{{Mode: "single", Run: run, Added: 1200, Distinct: 1200, DrainSeconds: 1200 / rate, Rate: rate, StartSeconds: 2,
		KubefeedCPU: 1, APIServerCPU: 0.5, EtcdCPU: 0.1, NATSCPU: 0.4, WallSeconds: 2, MachineCores: 1.5,
		Replicas: []replicaRow{{SyncedSeconds: 1, SyncedRSSMiB: 80, DrainedRSSMiB: 100, PeakRSSMiB: 120, CPUSeconds: 1, Delivered: 1200}}}}
	for _, m := range []struct {
		mode string
		rss  float64
		gate bool
	}{{"client-side", 60, false}, {"server-side", 40, true}} {
		r := shardingRow{Mode: m.mode, Run: run, Gate: m.gate, ServerSide: m.gate, Added: 1200, Distinct: 1200, DrainSeconds: 1200 / sharded, Rate: sharded, StartSeconds: 1.6,
			KubefeedCPU: 1.5, APIServerCPU: 0.3, EtcdCPU: 0.1, NATSCPU: 0.5, WallSeconds: 1.25, MachineCores: 2}
		for _, h := range held {
			r.Replicas = append(r.Replicas, replicaRow{Shards: h, SyncedSeconds: 5, SyncedRSSMiB: m.rss, DrainedRSSMiB: m.rss * h / 4, PeakRSSMiB: m.rss, CPUSeconds: 0.5, Delivered: 100 * h})
		}
		rows = append(rows, r)
	}
	return rows
}

// The targets are computed from the rows: the largest replica against
// the single one, server-side only; the drain ratio; an unbalanced split
// is named; over several runs, the median of the runs' own ratios.
func TestShardingTargets(t *testing.T) {
	three := &shardingReport{Date: "2026-12-05T00:00:00Z", Objects: 1200, Replicas: 3, Shards: 12, Cores: 2}
	for i, rates := range [][2]float64{{1000, 2000}, {1200, 1500}, {1500, 1500}} {
		three.Rows = append(three.Rows, shardingRun(i, rates[0], rates[1], 4, 4, 4)...)
	}
	for _, c := range []struct {
		name             string
		s                *shardingReport
		rssMet           string
		wantRSS, wantRun string
	}{
		{"balanced", shardingFixture(4, 4, 4), "yes", "0.400× (one run; the largest replica against the single one once drained: 40 vs 100 MiB; peak 0.333×)", "1.25× (one run: 1500/s vs 1200/s"},
		{"unbalanced", shardingFixture(6, 2, 4), "**no**", "0.600× (one run; the largest replica against the single one once drained: 60 vs 100 MiB; peak 0.333×); run 1: shards held 6 / 2 / 4, not balanced", "1.25×"},
		{"gate not applied", func() *shardingReport { s := shardingFixture(4, 4, 4); s.Rows[2].ServerSide = false; return s }(), "**no**", "not server-side", "1.25×"},
		// Drain ratios 2.0, 1.25, 1.0: the median is 1.25.
		{"three runs", three, "yes", "0.400× (median of 3 runs' own ratios; the largest replica against the single one once drained: 40 vs 100, 40 vs 100, 40 vs 100 MiB", "1.25× (median of 3 runs' own ratios: 2000/s vs 1000/s, 1500/s vs 1200/s, 1500/s vs 1500/s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := shardingTargets(c.s)
			if len(ts) != 3 {
				t.Fatalf("%d targets: %+v", len(ts), ts)
			}
			if ts[0].Met != c.rssMet || !strings.Contains(ts[0].Got, c.wantRSS) {
				t.Errorf("server-side RSS: %+v, want met %s and %q", ts[0], c.rssMet, c.wantRSS)
			}
			if ts[1].Met != "—" {
				t.Errorf("client-side RSS is reported, not judged: %+v", ts[1])
			}
			if ts[2].Met != "**no**" || !strings.HasPrefix(ts[2].Got, c.wantRun) || !strings.Contains(ts[2].Got, "2.0 of the 2 cores were busy, 1.9 of them") || !strings.HasSuffix(ts[2].Got, ": saturated") {
				t.Errorf("drain: %+v, want %q…", ts[2], c.wantRun)
			}
		})
	}
	if ts := shardingTargets(&shardingReport{}); ts != nil {
		t.Errorf("no single row, yet %+v", ts)
	}
}

// The section renders with every row, says the drain is CPU-bound when
// the measured processes filled the cores, and names an unbalanced split.
func TestRenderSharding(t *testing.T) {
	rep := benchfmtFixture()
	rep.Sharding = shardingFixture(6, 2, 4)
	out := t.TempDir()
	if err := writeReport(rep, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"## Sharding: one replica against 3 replicas × 12 shards (1,200 ConfigMaps)", "`ShardedListAndWatch=true`",
		"| server-side | 1 | on | API server | 6 / 2 / 4 |", "| client-side | 1 | off | kubefeed (client-side) |", "| server-side | 1 | 0 | 6 |",
		"| server-side | 1.25× | 1.25× | 0.60× | 0.33× |", "In run 1 of the `server-side` row",
		"ended holding 6 / 2 / 4 shards", "ran on saturated cores", "2.0 of the 2 cores were busy, 1.9 of them with the measured processes alone"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in the sharding section:\n%s", want, md[strings.Index(md, "## Sharding"):strings.Index(md, "## Targets")])
		}
	}
	if strings.Contains(md, "<no value>") {
		t.Error("a template reads a field the view lacks")
	}
}
