package exporter

import (
	"errors"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// startMetricsHarness runs cfg over src with its metrics in reg.
func startMetricsHarness(t *testing.T, cfg *config.Config, src *fakeSource, reg prometheus.Registerer, fail func(int, []*event.Event) error) *harness {
	t.Helper()
	h := &harness{t: t, src: src, sinks: map[string]*recorder{}, done: make(chan struct{})}
	ss := map[string]sinks.Sink{}
	for _, sc := range cfg.Sinks {
		r := &recorder{fail: fail}
		h.sinks[sc.Name], ss[sc.Name] = r, r
	}
	return h.run(t, Options{Config: cfg, Resolver: newResolver(), Sinks: ss, Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		ResolveRetry: 20 * time.Millisecond, Registerer: reg, clientFor: src.client})
}

// gathered is one scrape: families by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// metricValue is the value of the series of name with exactly labels
// (counter, gauge, or a histogram's sample count); ok is false when the
// series is not exported.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func labelNames(mf *dto.MetricFamily) []string {
	seen := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			seen[lp.GetName()] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestMetrics drives one pipeline through a delivery, a modification, a
// deletion, a retryable failure, a permanent one, a filter error and a
// relist, then reads every metric the README documents from the
// registry given in Options.Registerer: its name, type, label names and
// the value the pipeline moved it to.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{
		{Resource: "configmaps"},
		// A filter that fails at run time on every secret (no such key).
		{Resource: "secrets", Filter: `object.data.nope == "x"`},
	})
	var failed atomic.Bool
	fail := func(_ int, evs []*event.Event) error {
		for _, e := range evs {
			switch e.Name {
			case "retry":
				if failed.CompareAndSwap(false, true) {
					return errors.New("try again")
				}
			case "drop":
				return sinks.Permanent(errors.New("rejected"))
			}
		}
		return nil
	}
	h := startMetricsHarness(t, cfg, src, reg, fail)
	h.waitReady()
	rec := h.sinks["rec"]

	before := gather(t, reg)
	if v, ok := metricValue(before, "kubefeed_events_delivered_total", map[string]string{"sink": "rec", "resource": "configmaps", "type": "ADDED"}); ok && v != 0 {
		t.Fatalf("delivered %v before any change", v)
	}

	src.apply(cmRes.GVR, cm("a", "one", map[string]any{"k": "1"}), false)
	rec.waitFor(t, "one added", func(e []*event.Event) bool { return len(e) == 1 })
	src.apply(cmRes.GVR, cm("a", "one", map[string]any{"k": "2"}), false)
	rec.waitFor(t, "one modified", func(e []*event.Event) bool { return len(e) == 2 })
	src.remove(cmRes.GVR, "a", "one", false)
	rec.waitFor(t, "one deleted", func(e []*event.Event) bool { return len(e) == 3 })
	src.apply(cmRes.GVR, cm("a", "retry", nil), false)
	rec.waitFor(t, "retry added after a failure", func(e []*event.Event) bool { return len(e) == 4 })
	src.apply(cmRes.GVR, cm("a", "drop", nil), false)
	src.apply(secretRes.GVR, cm("a", "s", nil), false)
	quiesce(t, h, "rec")
	// A change while the watch is down, then the watch expires and the
	// API server fails the first lists (a watch restart): the relist that
	// succeeds recovers the change after a gap marker.
	src.apply(cmRes.GVR, cm("b", "quiet", nil), true)
	src.mu.Lock()
	src.listErr[cmRes.GVR] = errors.New("apiserver unavailable")
	src.mu.Unlock()
	src.expire(cmRes.GVR)
	waitUntil(t, "a watch restart counted", func() bool {
		v, _ := metricValue(gather(t, reg), "kubefeed_watch_restarts_total", map[string]string{"resource": "configmaps"})
		return v >= 1
	})
	src.mu.Lock()
	delete(src.listErr, cmRes.GVR)
	src.mu.Unlock()
	rec.waitFor(t, "the gap marker and the recovered change", func(e []*event.Event) bool { return len(e) == 6 })
	quiesce(t, h, "rec")

	mfs := gather(t, reg)
	for _, c := range []struct {
		name    string
		typ     dto.MetricType
		labels  []string          // label names, sorted
		series  map[string]string // one series
		want    float64           // its value
		atLeast bool
	}{
		{"kubefeed_changes_observed_total", dto.MetricType_COUNTER, []string{"resource", "type"}, map[string]string{"resource": "configmaps", "type": "DELETED"}, 1, false},
		{"kubefeed_changes_observed_total", dto.MetricType_COUNTER, []string{"resource", "type"}, map[string]string{"resource": "configmaps", "type": "MODIFIED"}, 1, true},
		{"kubefeed_changes_observed_total", dto.MetricType_COUNTER, []string{"resource", "type"}, map[string]string{"resource": "configmaps", "type": "ADDED"}, 4, true},
		{"kubefeed_events_delivered_total", dto.MetricType_COUNTER, []string{"resource", "sink", "type"}, map[string]string{"sink": "rec", "resource": "configmaps", "type": "ADDED"}, 3, false},
		{"kubefeed_events_delivered_total", dto.MetricType_COUNTER, []string{"resource", "sink", "type"}, map[string]string{"sink": "rec", "resource": "configmaps", "type": "MODIFIED"}, 1, false},
		{"kubefeed_events_delivered_total", dto.MetricType_COUNTER, []string{"resource", "sink", "type"}, map[string]string{"sink": "rec", "resource": "configmaps", "type": "DELETED"}, 1, false},
		{"kubefeed_send_failures_total", dto.MetricType_COUNTER, []string{"sink"}, map[string]string{"sink": "rec"}, 1, false},
		{"kubefeed_events_dropped_total", dto.MetricType_COUNTER, []string{"sink"}, map[string]string{"sink": "rec"}, 1, false},
		{"kubefeed_filter_errors_total", dto.MetricType_COUNTER, []string{"sink"}, map[string]string{"sink": "rec"}, 1, false},
		{"kubefeed_delivery_latency_seconds", dto.MetricType_HISTOGRAM, []string{"sink"}, map[string]string{"sink": "rec"}, 5, true},
		{"kubefeed_queue_depth", dto.MetricType_GAUGE, []string{"sink"}, map[string]string{"sink": "rec"}, 0, false},
		{"kubefeed_queue_oldest_seconds", dto.MetricType_GAUGE, []string{"sink"}, map[string]string{"sink": "rec"}, 0, false},
		{"kubefeed_sink_ready", dto.MetricType_GAUGE, []string{"sink"}, map[string]string{"sink": "rec"}, 1, false},
		{"kubefeed_relists_total", dto.MetricType_COUNTER, []string{"resource"}, map[string]string{"resource": "configmaps"}, 1, false},
		{"kubefeed_watch_restarts_total", dto.MetricType_COUNTER, []string{"resource"}, map[string]string{"resource": "configmaps"}, 1, true},
		{"kubefeed_recovered_events_total", dto.MetricType_COUNTER, []string{"sink"}, map[string]string{"sink": "rec"}, 1, false},
		{"kubefeed_gap_markers_total", dto.MetricType_COUNTER, []string{"reason", "sink"}, map[string]string{"sink": "rec", "reason": gapRelist}, 1, false},
		{"kubefeed_informer_synced", dto.MetricType_GAUGE, []string{"scope"}, map[string]string{"scope": "configmaps"}, 1, false},
		{"kubefeed_informer_synced", dto.MetricType_GAUGE, []string{"scope"}, map[string]string{"scope": "secrets"}, 1, false},
		{"kubefeed_informer_objects", dto.MetricType_GAUGE, []string{"scope"}, map[string]string{"scope": "configmaps"}, 3, false}, // retry, drop, quiet
		{"kubefeed_informer_objects", dto.MetricType_GAUGE, []string{"scope"}, map[string]string{"scope": "secrets"}, 1, false},
		{"kubefeed_ready", dto.MetricType_GAUGE, nil, map[string]string{}, 1, false},
	} {
		t.Run(c.name+"/"+strings.Join(sortedValues(c.series), ","), func(t *testing.T) {
			mf := mfs[c.name]
			if mf == nil {
				t.Fatalf("%s not exported; exported: %v", c.name, names(mfs))
			}
			if mf.GetType() != c.typ {
				t.Errorf("%s is a %v, want a %v", c.name, mf.GetType(), c.typ)
			}
			if got := labelNames(mf); strings.Join(got, ",") != strings.Join(c.labels, ",") {
				t.Errorf("%s labels %v, want %v", c.name, got, c.labels)
			}
			v, ok := metricValue(mfs, c.name, c.series)
			if !ok {
				t.Fatalf("%s%v not exported", c.name, c.series)
			}
			if c.atLeast && v < c.want || !c.atLeast && v != c.want {
				t.Errorf("%s%v = %v, want %v (at least: %v)", c.name, c.series, v, c.want, c.atLeast)
			}
		})
	}
}

func sortedValues(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func names(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range mfs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestMetricsWatchStall: a watch that makes no progress for watchTimeout
// is restarted and counted in kubefeed_watch_stalls_total{resource}
// (docs/configuration.md).
func TestMetricsWatchStall(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := newConfig([]config.Watch{{Resource: "deployments.apps"}})
	cfg.WatchTimeout.Duration = 200 * time.Millisecond
	h := startMetricsHarness(t, cfg, newFakeSource(0), reg, nil)
	h.waitReady()
	// The fake source sends nothing after the initial events: the watch stalls.
	waitUntil(t, "a stall counted", func() bool {
		v, _ := metricValue(gather(t, reg), "kubefeed_watch_stalls_total", map[string]string{"resource": "deployments.apps"})
		return v >= 1
	})
	mf := gather(t, reg)["kubefeed_watch_stalls_total"]
	if mf.GetType() != dto.MetricType_COUNTER || strings.Join(labelNames(mf), ",") != "resource" {
		t.Errorf("kubefeed_watch_stalls_total: %v with labels %v, want a counter with labels [resource]", mf.GetType(), labelNames(mf))
	}
}
