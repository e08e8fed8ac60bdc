package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The failover section of the report and its targets (issue 23),
// computed from a failoverReport: every run in the table, and per standby
// mode the medians the targets judge.

// failoverView is the failover section.
type failoverView struct {
	*failoverReport
	Runs  int
	Lines []failoverLine
	Modes []failoverMode
	// Retry is the Lease's retryPeriod; TakeoverMin, TakeoverMax the
	// span after the kill in which client-go's elector takes the Lease
	// (takeover); AfterBudget what the target leaves after leaseDuration.
	Retry, TakeoverMin, TakeoverMax, AfterBudget float64
}

// failoverLine is a standby mode's run.
type failoverLine struct {
	failoverRow
	After float64 // seconds from taking the Lease to the delivery
	Met   string
}

// failoverMode is a standby mode over its runs: the medians of the
// failover, the takeover and what came after it; the lists summed; how
// many runs were warm before the kill, and how long it took (the range).
type failoverMode struct {
	Standby                  string
	Runs, WarmRuns           int
	Seconds, Leader, After   float64
	Lists, WatchLists        float64
	WarmWaitMin, WarmWaitMax float64
	// B's RSS before the kill and once it delivered (ranges over the runs).
	BeforeMin, BeforeMax, AfterMin, AfterMax float64
	Met                                      bool
}

func newFailoverView(f *failoverReport) *failoverView {
	lo, hi := takeoverSpan(f)
	v := &failoverView{failoverReport: f, Retry: retryOf(f), TakeoverMin: lo, TakeoverMax: hi, AfterBudget: f.TargetSeconds - f.LeaseSeconds}
	for _, r := range f.Rows {
		v.Lines = append(v.Lines, failoverLine{failoverRow: r, After: afterTakeover(r), Met: newTarget("", "", r.met(f.TargetSeconds)).Met})
	}
	slices.SortStableFunc(v.Lines, func(a, b failoverLine) int {
		return cmp.Or(cmp.Compare(a.Run, b.Run), cmp.Compare(slices.Index(failoverModes, a.Standby), slices.Index(failoverModes, b.Standby)))
	})
	v.Modes = failoverModesOf(f)
	for _, m := range v.Modes {
		v.Runs = max(v.Runs, m.Runs)
	}
	return v
}

func afterTakeover(r failoverRow) float64 { return max(r.Seconds-r.LeaderSeconds, 0) }

// failoverModesOf sums up each standby mode's runs.
func failoverModesOf(f *failoverReport) []failoverMode {
	var out []failoverMode
	for _, mode := range failoverModes {
		var rs []failoverRow
		for _, r := range f.Rows {
			if r.Standby == mode {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		m := failoverMode{Standby: mode, Runs: len(rs),
			Seconds: median(rs, func(r failoverRow) float64 { return r.Seconds }),
			Leader:  median(rs, func(r failoverRow) float64 { return r.LeaderSeconds }),
			After:   median(rs, afterTakeover)}
		for i, r := range rs {
			m.Lists += r.Lists
			m.WatchLists += r.WatchLists
			if r.Warm {
				m.WarmRuns++
			}
			if i == 0 {
				m.WarmWaitMin, m.BeforeMin, m.AfterMin = r.WarmWaitSeconds, r.RSSBeforeMiB, r.RSSAfterMiB
			}
			m.WarmWaitMin, m.WarmWaitMax = min(m.WarmWaitMin, r.WarmWaitSeconds), max(m.WarmWaitMax, r.WarmWaitSeconds)
			m.BeforeMin, m.BeforeMax = min(m.BeforeMin, r.RSSBeforeMiB), max(m.BeforeMax, r.RSSBeforeMiB)
			m.AfterMin, m.AfterMax = min(m.AfterMin, r.RSSAfterMiB), max(m.AfterMax, r.RSSAfterMiB)
		}
		m.Met = m.Seconds > 0 && m.Seconds <= f.TargetSeconds && m.Lists == 0 && m.WatchLists == 0
		out = append(out, m)
	}
	return out
}

// retryOf is the report's retryPeriod (reports written before it was
// recorded ran with the default, 2 s).
func retryOf(f *failoverReport) float64 {
	if f.RetrySeconds > 0 {
		return f.RetrySeconds
	}
	return failoverRetry.Seconds()
}

// takeoverSpan is when, after the leader's kill, client-go's elector lets
// the standby take the Lease. The leader renews every retryPeriod, so the
// last renewal R is up to one retryPeriod before the kill; the standby
// records when it first saw R at its next look (looks come every
// retryPeriod × [1, 2.2)), and takes the Lease at its first look
// leaseDuration after that: at the earliest leaseDuration − retryPeriod
// after the kill, at the latest leaseDuration + 2 × 2.2 × retryPeriod.
func takeoverSpan(f *failoverReport) (lo, hi float64) {
	retry := retryOf(f)
	return f.LeaseSeconds - retry, f.LeaseSeconds + 2*2.2*retry
}

// failoverTargets are the failover rows of the targets table, a row per
// standby mode: the median failover, split at the takeover, whose moment
// client-go's elector jitters, with every run's figure.
func failoverTargets(f *failoverReport) []target {
	var ts []target
	for _, m := range failoverModesOf(f) {
		var each []string
		for _, r := range f.Rows {
			if r.Standby == m.Standby {
				each = append(each, fmt.Sprintf("%.1f", r.Seconds))
			}
		}
		got := fmt.Sprintf("%.1f s = %.1f s until the standby took the Lease + %.1f s after", m.Seconds, m.Leader, m.After)
		if m.Runs > 1 {
			got = fmt.Sprintf("median of %d runs (%s s): ", m.Runs, strings.Join(each, ", ")) + got + " (medians)"
		}
		got += fmt.Sprintf("; %g LIST, %g watch-lists in all", m.Lists, m.WatchLists)
		if m.Standby == "warm" && m.WarmRuns < m.Runs {
			got += fmt.Sprintf(" (the standby was warm in %d of %d runs)", m.WarmRuns, m.Runs)
		}
		if m.Seconds > f.TargetSeconds && m.After <= f.TargetSeconds-f.LeaseSeconds && m.Lists == 0 && m.WatchLists == 0 {
			lo, hi := takeoverSpan(f)
			got += fmt.Sprintf("; missed in the takeover, which client-go's elector puts %.0f–%.0f s after a kill with these timings: after it, %.1f s ≤ the %g s left", lo, hi, m.After, f.TargetSeconds-f.LeaseSeconds)
		}
		ts = append(ts, newTarget(fmt.Sprintf("failover with `standby: %s` at %dk cached ConfigMaps: leader SIGKILL → first new change delivered ≤ leaseDuration + 2 s (%g s), with no LIST and no watch-list", m.Standby, f.Objects/1000, f.TargetSeconds),
			got, m.Met))
	}
	return ts
}
