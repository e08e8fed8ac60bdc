package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The sharding section of the report and its targets (issue 23), computed
// from a shardingReport. Every ratio is taken within a run (a sharded row
// against the single replica of the same run) and the targets judge the
// median of the runs' ratios, since the shared machine's load drifts
// between runs.

const (
	// shardRSSTarget: each sharded replica's RSS against one unsharded
	// replica's, with the API server applying the shards.
	shardRSSTarget = 0.45
	// shardDrainTarget: the sharded replicas' aggregate drain against one
	// replica's.
	shardDrainTarget = 1.5
	// cpuBoundShare: cores busy at this share of the machine's are
	// saturated.
	cpuBoundShare = 0.85
)

// shardingView is the sharding section.
type shardingView struct {
	*shardingReport
	Runs  int
	Lines []shardingLine
	// Medians: per sharded mode, the medians of the runs' own ratios.
	Medians []shardingMedian
	// CPUBound: over every server-side run ≥ 85 % of the machine's cores
	// were busy; OwnCPU: with the measured processes alone. The ranges
	// are over the server-side runs (Sharded) and the single ones.
	CPUBound, OwnCPU bool
	Sharded, Single  coresRange
}

// coresRange is the span of cores busy over some runs: the machine's and
// the measured processes'.
type coresRange struct{ MachineMin, MachineMax, OwnMin, OwnMax float64 }

// shardingMedian is a sharded mode's medians over the runs.
type shardingMedian struct {
	Mode                       string
	RateX, StartX, RSSX, PeakX float64
}

// shardingLine is a row with its ratios to the single replica of its run.
type shardingLine struct {
	shardingRow
	RateX, Cores float64
	Replicas     []replicaLine
	// Held: the shards each replica held at the end ("4 / 4 / 4");
	// Balanced: each held its even share (shards/replicas, rounded down
	// or up); Conflicts: the replicas' refused beats, summed.
	Held      string
	Balanced  bool
	Conflicts int
	// MaxDrainedX: the largest replica's drained RSS over the single one's.
	MaxDrainedX float64
}

// replicaLine is a replica with its RSS over the single replica's.
type replicaLine struct {
	replicaRow
	SyncedX, DrainedX, PeakX float64
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// The figures of a row the targets compare.
func rowRate(r shardingRow) float64 { return r.Rate }
func rowStart(r shardingRow) float64 {
	if r.StartSeconds <= 0 {
		return 0
	}
	return 1 / r.StartSeconds // a speed, so that the ratio reads as the rate's
}
func rowRSS(r shardingRow) float64  { return r.maxRSS(drainedRSS) }
func rowPeak(r shardingRow) float64 { return r.maxRSS(peakRSS) }

func newShardingView(s *shardingReport) *shardingView {
	v := &shardingView{shardingReport: s, Runs: len(s.runs("single"))}
	for _, r := range s.Rows {
		l := shardingLine{shardingRow: r, Cores: r.CPUCores()}
		one := s.run("single", r.Run)
		if one != nil {
			l.RateX = ratio(r.Rate, one.Rate)
		}
		for _, rr := range r.Replicas {
			rl := replicaLine{replicaRow: rr}
			if one != nil && len(one.Replicas) > 0 {
				b := one.Replicas[0]
				rl.SyncedX, rl.DrainedX, rl.PeakX = ratio(rr.SyncedRSSMiB, b.SyncedRSSMiB), ratio(rr.DrainedRSSMiB, b.DrainedRSSMiB), ratio(rr.PeakRSSMiB, b.PeakRSSMiB)
			}
			l.Replicas = append(l.Replicas, rl)
		}
		l.Held, l.Balanced, l.Conflicts = heldOf(s, r)
		if one != nil {
			l.MaxDrainedX = ratio(rowRSS(r), rowRSS(*one))
		}
		v.Lines = append(v.Lines, l)
	}
	// By run, and in each run in the report's order of the modes (they
	// were measured in another order each run).
	slices.SortStableFunc(v.Lines, func(a, b shardingLine) int {
		return cmp.Or(cmp.Compare(a.Run, b.Run), cmp.Compare(slices.Index(shardingModes, a.Mode), slices.Index(shardingModes, b.Mode)))
	})
	single := s.runs("single")
	for _, m := range shardingModes[1:] {
		rs := s.runs(m)
		if len(rs) == 0 {
			continue
		}
		v.Medians = append(v.Medians, shardingMedian{m, medianRatio(rs, single, rowRate), medianRatio(rs, single, rowStart),
			medianRatio(rs, single, rowRSS), medianRatio(rs, single, rowPeak)})
	}
	v.Sharded, v.Single = spanOf(s.runs("server-side")), spanOf(single)
	v.OwnCPU = len(s.runs("server-side")) > 0 && cpuBound(s, v.Sharded.OwnMin)
	v.CPUBound = v.OwnCPU || (len(s.runs("server-side")) > 0 && cpuBound(s, v.Sharded.MachineMin))
	return v
}

// spanOf is the cores busy over rows.
func spanOf(rs []shardingRow) coresRange {
	var c coresRange
	for i, r := range rs {
		own := r.CPUCores()
		if i == 0 {
			c = coresRange{r.MachineCores, r.MachineCores, own, own}
			continue
		}
		c.MachineMin, c.MachineMax = min(c.MachineMin, r.MachineCores), max(c.MachineMax, r.MachineCores)
		c.OwnMin, c.OwnMax = min(c.OwnMin, own), max(c.OwnMax, own)
	}
	return c
}

// shardingTargets are issue 23's rows of the targets table.
func shardingTargets(s *shardingReport) []target {
	single := s.runs("single")
	if len(single) == 0 {
		return nil
	}
	var ts []target
	runs := func(n int) string {
		if n == 1 {
			return "one run"
		}
		return fmt.Sprintf("median of %d runs' own ratios", n)
	}
	// each lists a figure per run: "a/b MiB" and the like.
	each := func(rs []shardingRow, f func(r, one shardingRow) string) string {
		parts := make([]string, 0, len(rs))
		for i, r := range rs {
			if i < len(single) {
				parts = append(parts, f(r, single[i]))
			}
		}
		return strings.Join(parts, ", ")
	}
	rss := func(rs []shardingRow) (string, float64) {
		d, p := medianRatio(rs, single, rowRSS), medianRatio(rs, single, rowPeak)
		got := fmt.Sprintf("%.3f× (%s; the largest replica against the single one once drained: %s MiB; peak %.3f×)", d, runs(len(rs)),
			each(rs, func(r, one shardingRow) string { return fmt.Sprintf("%.0f vs %.0f", rowRSS(r), rowRSS(one)) }), p)
		for _, r := range rs {
			if h, balanced, _ := heldOf(s, r); !balanced {
				got += fmt.Sprintf("; run %d: shards held %s, not balanced", r.Run+1, h)
			}
		}
		return got, d
	}
	name := fmt.Sprintf("%d replicas × %d shards at %dk ConfigMaps", s.Replicas, s.Shards, s.Objects/1000)
	server := s.runs("server-side")
	if len(server) > 0 {
		got, d := rss(server)
		serverSide := true
		for _, r := range server {
			serverSide = serverSide && r.ServerSide
		}
		if !serverSide {
			got = "not server-side: kubefeed did not see the API server apply shardSelector (kubefeed_shard_server_side 0); " + got
		}
		ts = append(ts, newTarget(fmt.Sprintf("%s, server-side (`%s`): each replica's RSS ≤ %.2f× one unsharded replica's", name, shardingGate, shardRSSTarget),
			got, serverSide && d <= shardRSSTarget))
	}
	if rs := s.runs("client-side"); len(rs) > 0 {
		got, _ := rss(rs)
		ts = append(ts, target{fmt.Sprintf("%s, client-side (gate off): each replica's RSS against one unsharded replica's (reported, no bound)", name), got, "—"})
	}
	if len(server) > 0 {
		x := medianRatio(server, single, rowRate)
		got := fmt.Sprintf("%.2f× (%s: %s, first → last added event in the stream; start → drained: %.2f×)", x, runs(len(server)),
			each(server, func(r, one shardingRow) string { return fmt.Sprintf("%.0f/s vs %.0f/s", r.Rate, one.Rate) }), medianRatio(server, single, rowStart))
		if x < shardDrainTarget {
			sh, one := spanOf(server), spanOf(single)
			got += fmt.Sprintf("; over the sharded runs %s of the %d cores were busy, %s of them with the measured processes (the single ones': %s, %s)",
				span(sh.MachineMin, sh.MachineMax), s.Cores, span(sh.OwnMin, sh.OwnMax), span(one.MachineMin, one.MachineMax), span(one.OwnMin, one.OwnMax))
			if cpuBound(s, sh.MachineMin) {
				got += ": saturated"
			}
		}
		ts = append(ts, newTarget(fmt.Sprintf("aggregate drain of %d server-side sharded replicas into one JetStream ≥ %.1f× one replica's on the same machine", s.Replicas, shardDrainTarget),
			got, x >= shardDrainTarget))
	}
	return ts
}

// span writes a range of cores ("1.9", or "1.8–2.0").
func span(lo, hi float64) string { return spanf("%.1f", lo, hi) }

// spanf writes a range with format ("a" when both ends read the same).
func spanf(format string, lo, hi float64) string {
	a, b := fmt.Sprintf(format, lo), fmt.Sprintf(format, hi)
	if a == b {
		return a
	}
	return a + "–" + b
}

// heldOf is how a row's shards ended up over its replicas.
func heldOf(s *shardingReport, r shardingRow) (held string, balanced bool, conflicts int) {
	if r.Mode == "single" || len(r.Replicas) == 0 {
		return "", true, 0
	}
	floor := s.Shards / len(r.Replicas)
	ceil := floor
	if s.Shards%len(r.Replicas) != 0 {
		ceil++
	}
	parts := make([]string, len(r.Replicas))
	balanced = true
	for i, rr := range r.Replicas {
		parts[i] = fmt.Sprintf("%g", rr.Shards)
		balanced = balanced && rr.Shards >= float64(floor) && rr.Shards <= float64(ceil)
		conflicts += rr.MemberConflicts
	}
	return strings.Join(parts, " / "), balanced, conflicts
}

// cpuBound tells whether cores busy fill the machine's cores.
func cpuBound(s *shardingReport, cores float64) bool {
	return s.Cores > 0 && cores >= cpuBoundShare*float64(s.Cores)
}
