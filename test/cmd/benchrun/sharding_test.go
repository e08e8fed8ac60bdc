package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shardingFixture is a sharding report whose sharded rows' replicas end
// holding held shards each: the single replica at 100 MiB drained, the
// server-side replicas at 40 MiB, the client-side ones at 60 MiB.
func shardingFixture(held ...float64) *shardingReport {
	s := &shardingReport{Date: "2026-12-05T00:00:00Z", Objects: 1200, Replicas: len(held), Shards: 12, Cores: 2}
	s.Rows = append(s.Rows, shardingRow{Mode: "single", Added: 1200, Distinct: 1200, DrainSeconds: 1, Rate: 1200, StartSeconds: 2,
		KubefeedCPU: 1, APIServerCPU: 0.5, EtcdCPU: 0.1, NATSCPU: 0.4, WallSeconds: 2, MachineCores: 1.5,
		Replicas: []replicaRow{{SyncedSeconds: 1, SyncedRSSMiB: 80, DrainedRSSMiB: 100, PeakRSSMiB: 120, CPUSeconds: 1, Delivered: 1200}}})
	for _, m := range []struct {
		mode string
		rss  float64
		gate bool
	}{{"client-side", 60, false}, {"server-side", 40, true}} {
		r := shardingRow{Mode: m.mode, Gate: m.gate, ServerSide: m.gate, Added: 1200, Distinct: 1200, DrainSeconds: 0.8, Rate: 1500, StartSeconds: 6,
			KubefeedCPU: 1.5, APIServerCPU: 0.3, EtcdCPU: 0.1, NATSCPU: 0.5, WallSeconds: 1.25, MachineCores: 2}
		for _, h := range held {
			r.Replicas = append(r.Replicas, replicaRow{Shards: h, SyncedSeconds: 5, SyncedRSSMiB: m.rss, DrainedRSSMiB: m.rss * h / 4, PeakRSSMiB: m.rss, CPUSeconds: 0.5, Delivered: 100 * h})
		}
		s.Rows = append(s.Rows, r)
	}
	return s
}

// The targets are computed from the rows: the largest replica against
// the single one, server-side only; the drain ratio; an unbalanced split
// is named.
func TestShardingTargets(t *testing.T) {
	for _, c := range []struct {
		name      string
		s         *shardingReport
		rssMet    string
		wantInRSS string
	}{
		{"balanced", shardingFixture(4, 4, 4), "yes", "0.40×"},
		{"unbalanced", shardingFixture(6, 2, 4), "**no**", "shards held 6 / 2 / 4, not balanced"},
		{"gate not applied", func() *shardingReport { s := shardingFixture(4, 4, 4); s.Rows[2].ServerSide = false; return s }(), "**no**", "not server-side"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := shardingTargets(c.s)
			if len(ts) != 3 {
				t.Fatalf("%d targets: %+v", len(ts), ts)
			}
			if ts[0].Met != c.rssMet || !strings.Contains(ts[0].Got, c.wantInRSS) {
				t.Errorf("server-side RSS: %+v, want met %s and %q", ts[0], c.rssMet, c.wantInRSS)
			}
			if ts[1].Met != "—" {
				t.Errorf("client-side RSS is reported, not judged: %+v", ts[1])
			}
			if ts[2].Met != "**no**" || !strings.Contains(ts[2].Got, "1.25× (1500/s vs 1200/s") || !strings.Contains(ts[2].Got, "2.0 of the 2 cores were busy, 1.9 of them") || !strings.HasSuffix(ts[2].Got, ": CPU-bound") {
				t.Errorf("drain: %+v", ts[2])
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
		"| server-side | on | API server | 6 / 2 / 4 |", "| client-side | off | kubefeed (client-side) |", "| server-side | 0 | 6 |",
		"ended holding 6 / 2 / 4 shards", "ran on saturated cores", "2.0 of the 2 cores were busy, 1.9 of them with the measured processes alone"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in the sharding section:\n%s", want, md[strings.Index(md, "## Sharding"):strings.Index(md, "## Targets")])
		}
	}
	if strings.Contains(md, "<no value>") {
		t.Error("a template reads a field the view lacks")
	}
}
