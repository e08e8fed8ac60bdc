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
	shrunkDesc   = prometheus.NewDesc("kubefeed_checkpoint_shrunk_records_total", "Record writes the backend refused with their state (too large), stored with uid and version only.", nil, nil)
	refusedDesc  = prometheus.NewDesc("kubefeed_checkpoint_refused_records_total", "Record writes the backend refused even without state (bad key); skipped, not retried.", nil, nil)
)

// statser is a backend with flush statistics.
type statser interface{ stats() *committer }

func (c *committer) stats() *committer { return c }

// Collector exposes a backend's flush statistics.
type Collector struct {
	c       *committer
	corrupt bool
}

// NewCollector reports on a File or KV; corrupt says the start fell back.
func NewCollector(b statser, corrupt bool) *Collector {
	return &Collector{c: b.stats(), corrupt: corrupt}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{flushesDesc, flushErrDesc, flushDurDesc, lagDesc, unreadable, skippedDesc, shrunkDesc, refusedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	flushes, errs, skipped := c.c.flushes.Load(), c.c.flushErrors.Load(), c.c.skipped.Load()
	dur := time.Duration(c.c.lastDuration.Load())
	lag := 0.0
	if last := c.c.lastFlush.Load(); last != 0 {
		lag = time.Since(time.Unix(0, last)).Seconds()
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
	ch <- prometheus.MustNewConstMetric(shrunkDesc, prometheus.CounterValue, float64(c.c.shrunk.Load()))
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.c.refused.Load()))
}
