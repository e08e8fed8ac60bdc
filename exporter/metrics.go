package exporter

import (
	"time"

	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are kubefeed's Prometheus metrics. Label values come from the
// config (resource, sink, scope) and from fixed sets (type, reason), never
// from object names, so cardinality is bounded.
type metrics struct {
	observed     *prometheus.CounterVec
	delivered    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	relists      *prometheus.CounterVec
	watchErrors  *prometheus.CounterVec
	recovered    *prometheus.CounterVec
	gaps         *prometheus.CounterVec
	filterErrors *prometheus.CounterVec
	stalled      *prometheus.CounterVec
	// outOfShard counts objects received outside the shard's range and
	// dropped here: the API server did not apply the shard selector.
	outOfShard *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, e *Exporter) *metrics {
	m := &metrics{
		observed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_changes_observed_total", Help: "Notifications from the informers (adds, updates, deletes), before de-duplication.",
		}, []string{"resource", "type"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_events_delivered_total", Help: "Events acknowledged by a sink.",
		}, []string{"sink", "resource", "type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_send_failures_total", Help: "Retryable send failures; the key is retried with backoff.",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_events_dropped_total", Help: "Events dropped after a permanent error.",
		}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kubefeed_delivery_latency_seconds", Help: "From the first notification of a change to the sink's acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"sink"}),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_relists_total", Help: "Lists after the first (watch expired, API server restarted).",
		}, []string{"resource"}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_watch_restarts_total", Help: "Watches that ended with an error and were restarted.",
		}, []string{"resource"}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_recovered_events_total", Help: "Events for changes seen through a restart or relist.",
		}, []string{"sink"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_gap_markers_total", Help: "io.kubefeed.gap markers acknowledged by a sink.",
		}, []string{"sink", "reason"}),
		outOfShard: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_shard_filtered_total", Help: "Objects listed or watched outside this shard's uid range and dropped by kubefeed (client-side sharding: the API server ignored shardSelector).",
		}, []string{"resource"}),
		stalled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_watch_stalls_total", Help: "Watches restarted because they made no progress (no event, no bookmark) for watchTimeout.",
		}, []string{"resource"}),
		filterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_filter_errors_total", Help: "Filter expressions that failed at run time (counted as no match).",
		}, []string{"sink"}),
	}
	reg.MustRegister(m.observed, m.delivered, m.failed, m.dropped, m.latency, m.relists, m.watchErrors, m.recovered, m.gaps, m.filterErrors, m.stalled, m.outOfShard, &stateCollector{e: e})
	return m
}

var (
	queueDepthDesc = prometheus.NewDesc("kubefeed_queue_depth", "Keys waiting in a sink's queue.", []string{"sink"}, nil)
	sinkReadyDesc  = prometheus.NewDesc("kubefeed_sink_ready", "1 when the sink is open; 0 while it is retried after failing to open (see /readyz and the logs for why).", []string{"sink"}, nil)
	queueAgeDesc   = prometheus.NewDesc("kubefeed_queue_oldest_seconds", "Age of the oldest undelivered change of a sink.", []string{"sink"}, nil)
	syncedDesc     = prometheus.NewDesc("kubefeed_informer_synced", "1 when the scope's informer has synced.", []string{"scope"}, nil)
	objectsDesc    = prometheus.NewDesc("kubefeed_informer_objects", "Objects in the scope's informer cache.", []string{"scope"}, nil)
	readyDesc      = prometheus.NewDesc("kubefeed_ready", "1 once the first caches synced and events flow.", nil, nil)
)

// stateCollector reads queue and informer state at scrape time, off the
// hot path.
type stateCollector struct{ e *Exporter }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepthDesc
	ch <- sinkReadyDesc
	ch <- queueAgeDesc
	ch <- syncedDesc
	ch <- objectsDesc
	ch <- readyDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, r := range c.e.runners {
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, float64(r.queue.Len()), r.name)
		age := 0.0
		if t, ok := r.oldestPending(); ok {
			age = now.Sub(t).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, age, r.name)
		open := 1.0
		if ok, _ := r.health(); !ok {
			open = 0
		}
		ch <- prometheus.MustNewConstMetric(sinkReadyDesc, prometheus.GaugeValue, open, r.name)
	}
	c.e.mu.Lock()
	scopes := make([]*scope, 0, len(c.e.scopes))
	for _, s := range c.e.scopes {
		scopes = append(scopes, s)
	}
	c.e.mu.Unlock()
	for _, s := range scopes {
		synced := 0.0
		if s.informer.HasSynced() {
			synced = 1
		}
		ch <- prometheus.MustNewConstMetric(syncedDesc, prometheus.GaugeValue, synced, s.name)
		ch <- prometheus.MustNewConstMetric(objectsDesc, prometheus.GaugeValue, float64(len(s.informer.GetStore().ListKeys())), s.name)
	}
	ready := 0.0
	if c.e.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
}

// resourceLabel names a resource as users write it (deployments.apps).
func resourceLabel(res resource.Resource) string {
	if res.GVR.Group == "" {
		return res.GVR.Resource
	}
	return res.GVR.Resource + "." + res.GVR.Group
}
