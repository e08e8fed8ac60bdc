package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// ownP99 reads the bucket that holds the 99th percentile of kubefeed's
// delivery latency histogram.
func TestOwnP99(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples map[float64]int // seconds → how many
		want    float64         // ms
	}{
		{"none", nil, 0},
		{"all fast", map[float64]int{0.0005: 100}, 1},
		{"one in a hundred slow stays in p99's bucket", map[float64]int{0.0005: 99, 0.02: 1}, 1},
		{"two in a hundred slow", map[float64]int{0.0005: 98, 0.02: 2}, 25},
		{"tail in the 10 ms bucket", map[float64]int{0.003: 985, 0.008: 15}, 10},
		{"exactly 99 in a hundred below", map[float64]int{0.003: 990, 0.008: 10}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kubefeed_delivery_latency_seconds",
				Buckets: []float64{.001, .0025, .005, .01, .025, .05}}, []string{"sink"})
			reg.MustRegister(h)
			for v, n := range tc.samples {
				for i := 0; i < n; i++ {
					h.WithLabelValues("s").Observe(v)
				}
			}
			if got := ownP99(reg); got != tc.want {
				t.Errorf("ownP99 = %v ms, want %v", got, tc.want)
			}
		})
	}
}
