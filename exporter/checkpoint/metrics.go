package checkpoint

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	flushesDesc  = prometheus.NewDesc("kubefeed_checkpoint_flushes_total", "Checkpoint flushes.", nil, nil)
	flushErrDesc = prometheus.NewDesc("kubefeed_checkpoint_flush_errors_total", "Checkpoint flushes that failed (retried).", nil, nil)
	flushDurDesc = prometheus.NewDesc("kubefeed_checkpoint_flush_seconds", "Duration of the last checkpoint flush.", nil, nil)
	lagDesc      = prometheus.NewDesc("kubefeed_checkpoint_lag_seconds", "Time since the last successful checkpoint flush.", nil, nil)
	unreadable   = prometheus.NewDesc("kubefeed_checkpoint_unreadable", "1 when the checkpoint could not be read at start (fallback taken).", nil, nil)
	skippedDesc  = prometheus.NewDesc("kubefeed_checkpoint_skipped_records_total", "Unreadable checkpoint records skipped at start.", nil, nil)
)

// Collector exposes a File's flush statistics.
type Collector struct {
	f       *File
	corrupt bool
}

// NewCollector reports on f; corrupt says the start fell back.
func NewCollector(f *File, corrupt bool) *Collector { return &Collector{f: f, corrupt: corrupt} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{flushesDesc, flushErrDesc, flushDurDesc, lagDesc, unreadable, skippedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.f.mu.Lock()
	flushes, errs, dur, last, skipped := c.f.flushes, c.f.flushErrors, c.f.lastFlushDuration, c.f.lastFlush, c.f.skipped
	c.f.mu.Unlock()
	lag := 0.0
	if !last.IsZero() {
		lag = time.Since(last).Seconds()
	}
	bad := 0.0
	if c.corrupt {
		bad = 1
	}
	ch <- prometheus.MustNewConstMetric(flushesDesc, prometheus.CounterValue, float64(flushes))
	ch <- prometheus.MustNewConstMetric(flushErrDesc, prometheus.CounterValue, float64(errs))
	ch <- prometheus.MustNewConstMetric(flushDurDesc, prometheus.GaugeValue, dur.Seconds())
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(unreadable, prometheus.GaugeValue, bad)
	ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(skipped))
}
