package main

import "testing"

// createdStamp reads the writer's stamp and nothing else: warm-up objects,
// nulls and odd types carry none; a stamp beyond 2^53 stays exact.
func TestCreatedStamp(t *testing.T) {
	for name, tc := range map[string]struct {
		obj  map[string]any
		want int64
		ok   bool
	}{
		"stamped":       {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "1796000000000000001"}}}, 1796000000000000001, true},
		"2^53+1":        {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "9007199254740993"}}}, 9007199254740993, true},
		"warm-up":       {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/warmup": "true"}}}, 0, false},
		"no metadata":   {map[string]any{}, 0, false},
		"null metadata": {map[string]any{"metadata": nil}, 0, false},
		"null stamp":    {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": nil}}}, 0, false},
		"not a number":  {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "soon"}}}, 0, false},
		"a number type": {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": int64(5)}}}, 0, false},
	} {
		if got, ok := createdStamp(tc.obj); got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", name, got, ok, tc.want, tc.ok)
		}
	}
}

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
