package main

import "testing"

// medianRatio pairs runs by index: a run's drift cancels in its own ratio,
// which the ratio of the medians does not do.
func TestMedianRatio(t *testing.T) {
	cpu := func(r result) float64 { return r.CPUPer1k }
	runs := func(v ...float64) []result {
		var rs []result
		for _, x := range v {
			rs = append(rs, result{CPUPer1k: x})
		}
		return rs
	}
	// Each run's mode costs 1.1× its baseline, while the runs drift 2×.
	if got := medianRatio(runs(1.1, 2.2, 4.4), runs(1, 2, 4), cpu); got < 1.0999 || got > 1.1001 {
		t.Errorf("drifting runs: %v, want 1.1", got)
	}
	// Median of 1.5, 1.0 and 3.0, not the ratio of the medians (2/2).
	if got := medianRatio(runs(3, 2, 3), runs(2, 2, 1), cpu); got != 1.5 {
		t.Errorf("median of the ratios: %v, want 1.5", got)
	}
	// Runs without a baseline (or with a zero one) are left out.
	if got := medianRatio(runs(2, 9, 5), runs(1, 0), cpu); got != 2 {
		t.Errorf("unpaired runs: %v, want 2", got)
	}
	if got := medianRatio(nil, runs(1), cpu); got != 0 {
		t.Errorf("nothing to pair: %v, want 0", got)
	}
}

func TestQuantile(t *testing.T) {
	if got := quantile(nil, 99); got != 0 {
		t.Fatalf("quantile of nothing = %v", got)
	}
	v := make([]float64, 200)
	for i := range v {
		v[i] = float64(200 - i) // 200 … 1, unsorted
	}
	if p50, p99 := quantile(v, 50), quantile(v, 99); p50 != 101 || p99 != 199 {
		t.Fatalf("p50 %v p99 %v, want 101 and 199", p50, p99)
	}
	if got := quantile([]float64{7}, 99); got != 7 {
		t.Fatalf("one value: %v", got)
	}
}

func TestMedian(t *testing.T) {
	rate := func(r result) float64 { return r.Rate }
	runs := func(v ...float64) []result {
		var rs []result
		for _, x := range v {
			rs = append(rs, result{Rate: x})
		}
		return rs
	}
	for _, tc := range []struct {
		rs   []result
		want float64
	}{{nil, 0}, {runs(5), 5}, {runs(3, 1, 2), 2}, {runs(4, 1, 3, 2), 3}} {
		if got := median(tc.rs, rate); got != tc.want {
			t.Errorf("median of %v = %v, want %v (the upper middle of an even count)", tc.rs, got, tc.want)
		}
	}
}

// medianBy returns the element itself, such as the pair of runs whose
// ratio is the median.
func TestMedianBy(t *testing.T) {
	pairs := [][2]float64{{10, 9}, {10, 5}, {10, 7}}
	got := medianBy(pairs, func(p [2]float64) float64 { return p[1] / p[0] })
	if got != [2]float64{10, 7} {
		t.Errorf("medianBy = %v, want the pair with ratio 0.7", got)
	}
}
