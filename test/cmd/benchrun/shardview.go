package main

import (
	"fmt"
	"strings"
)

// The sharding section of the report and its targets (issue 23), computed
// from a shardingReport.

const (
	// shardRSSTarget: each sharded replica's RSS against one unsharded
	// replica's, with the API server applying the shards.
	shardRSSTarget = 0.45
	// shardDrainTarget: the sharded replicas' aggregate drain against one
	// replica's.
	shardDrainTarget = 1.5
	// cpuBoundShare: measured processes that keep this share of the
	// machine's cores busy are bound by it.
	cpuBoundShare = 0.85
)

// shardingView is the sharding section.
type shardingView struct {
	*shardingReport
	Single *shardingRow
	Lines  []shardingLine
	// CPUBound: over the sharded drain (server-side) ≥ 85 % of the
	// machine's cores were busy; OwnCPU: with the measured processes
	// alone.
	CPUBound, OwnCPU bool
	// Sharded is the server-side row's line.
	Sharded *shardingLine
}

// shardingLine is a row with its ratios to the single replica.
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
}

// replicaLine is a replica with its RSS over the single replica's.
type replicaLine struct {
	replicaRow
	SyncedX, DrainedX, PeakX float64
}

func newShardingView(s *shardingReport) *shardingView {
	v := &shardingView{shardingReport: s, Single: s.row("single")}
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	for _, r := range s.Rows {
		l := shardingLine{shardingRow: r, Cores: r.CPUCores()}
		if v.Single != nil {
			l.RateX = ratio(r.Rate, v.Single.Rate)
		}
		for _, rr := range r.Replicas {
			rl := replicaLine{replicaRow: rr}
			if v.Single != nil && len(v.Single.Replicas) > 0 {
				one := v.Single.Replicas[0]
				rl.SyncedX, rl.DrainedX, rl.PeakX = ratio(rr.SyncedRSSMiB, one.SyncedRSSMiB), ratio(rr.DrainedRSSMiB, one.DrainedRSSMiB), ratio(rr.PeakRSSMiB, one.PeakRSSMiB)
			}
			l.Replicas = append(l.Replicas, rl)
		}
		l.Held, l.Balanced, l.Conflicts = heldOf(s, r)
		v.Lines = append(v.Lines, l)
	}
	for i := range v.Lines {
		if l := &v.Lines[i]; l.Mode == "server-side" {
			v.Sharded = l
			v.OwnCPU = cpuBound(s, l.Cores)
			v.CPUBound = v.OwnCPU || cpuBound(s, l.MachineCores)
		}
	}
	return v
}

// shardingTargets are issue 23's rows of the targets table.
func shardingTargets(s *shardingReport) []target {
	one := s.row("single")
	if one == nil || len(one.Replicas) == 0 {
		return nil
	}
	base := one.Replicas[0]
	var ts []target
	rss := func(r *shardingRow) (string, float64) {
		d, p := r.maxRSS(drainedRSS)/base.DrainedRSSMiB, r.maxRSS(peakRSS)/base.PeakRSSMiB
		return fmt.Sprintf("%.2f× (largest replica %.0f MiB vs %.0f MiB once drained; peak %.2f×, %.0f vs %.0f MiB)",
			d, r.maxRSS(drainedRSS), base.DrainedRSSMiB, p, r.maxRSS(peakRSS), base.PeakRSSMiB), d
	}
	name := fmt.Sprintf("%d replicas × %d shards at %dk ConfigMaps", s.Replicas, s.Shards, s.Objects/1000)
	held := func(r *shardingRow, got string) string {
		h, balanced, _ := heldOf(s, *r)
		if !balanced {
			return got + fmt.Sprintf("; shards held %s, not balanced", h)
		}
		return got
	}
	if r := s.row("server-side"); r != nil {
		got, d := rss(r)
		got = held(r, got)
		if !r.ServerSide {
			got = "not server-side: kubefeed did not see the API server apply shardSelector (kubefeed_shard_server_side 0); " + got
		}
		ts = append(ts, newTarget(fmt.Sprintf("%s, server-side (`%s`): each replica's RSS ≤ %.2f× one unsharded replica's", name, shardingGate, shardRSSTarget),
			got, r.ServerSide && d <= shardRSSTarget))
	}
	if r := s.row("client-side"); r != nil {
		got, _ := rss(r)
		got = held(r, got)
		ts = append(ts, target{fmt.Sprintf("%s, client-side (gate off): each replica's RSS against one unsharded replica's (reported, no bound)", name), got, "—"})
	}
	if r := s.row("server-side"); r != nil && one.Rate > 0 {
		x := r.Rate / one.Rate
		got := fmt.Sprintf("%.2f× (%.0f/s vs %.0f/s, first → last added event in the stream)", x, r.Rate, one.Rate)
		if x < shardDrainTarget {
			got += fmt.Sprintf("; over the sharded run %.1f of the %d cores were busy, %.1f of them with the measured processes (the single one's: %.1f, %.1f)",
				r.MachineCores, s.Cores, r.CPUCores(), one.MachineCores, one.CPUCores())
			if cpuBound(s, r.MachineCores) {
				got += ": CPU-bound"
			}
		}
		ts = append(ts, newTarget(fmt.Sprintf("aggregate drain of %d server-side sharded replicas into one JetStream ≥ %.1f× one replica's on the same machine", s.Replicas, shardDrainTarget),
			got, x >= shardDrainTarget))
	}
	return ts
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
