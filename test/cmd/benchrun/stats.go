package main

import (
	"cmp"
	"slices"
)

// The report's statistics: every median, percentile and ratio of runs in
// it comes from here.

// quantile sorts v and returns its p-th percentile: the value at index
// len*p/100, so the median is the upper middle of an even count (0 for
// none).
func quantile(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)*p/100]
}

// median is the median of f over rs.
func median[T any](rs []T, f func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return quantile(v, 50)
}

// medianRatio is the median over runs of f(num[i]) / f(den[i]): the ratio
// of two modes measured in the same run, so that the load's drift between
// runs cancels out. Runs without both, or with f(den[i]) ≤ 0, are left out
// (0 when none is left).
func medianRatio[T any](num, den []T, f func(T) float64) float64 {
	var v []float64
	for i := range min(len(num), len(den)) {
		if d := f(den[i]); d > 0 {
			v = append(v, f(num[i])/d)
		}
	}
	return quantile(v, 50)
}

// medianBy sorts xs by key and returns the element in the middle, as
// quantile picks it.
func medianBy[T any](xs []T, key func(T) float64) T {
	slices.SortFunc(xs, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return xs[len(xs)/2]
}
