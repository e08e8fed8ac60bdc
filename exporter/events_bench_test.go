package exporter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// benchEvent is a core/v1 Event as the kubelet writes it (about 1 KiB in
// JSON), at count n.
func benchEvent(name string, n int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{"name": name, "namespace": "bench", "uid": "uid-" + name, "resourceVersion": fmt.Sprint(n),
			"creationTimestamp": "2026-11-28T15:00:00Z"},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "bench", "name": "web-" + name,
			"uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "resourceVersion": "123456", "fieldPath": "spec.containers{app}"},
		"reason":             "BackOff",
		"message":            "Back-off restarting failed container app in pod web-" + name + "_bench(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)",
		"source":             map[string]any{"component": "kubelet", "host": "node-1.example.internal"},
		"firstTimestamp":     "2026-11-28T15:00:00Z",
		"lastTimestamp":      fmt.Sprintf("2026-11-28T15:%02d:%02dZ", n/60%60, n%60),
		"count":              int64(n),
		"type":               "Warning",
		"eventTime":          nil,
		"reportingComponent": "kubelet",
		"reportingInstance":  "node-1.example.internal",
	}}
}

// eventsPipeline is pipeline (bench_test.go) for one rule on core Events.
func eventsPipeline(b *testing.B, w config.Watch) (*Exporter, *scope, *discard) {
	w.Resource = "events"
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Workers: 4,
		Watch: []config.Watch{w}, Sinks: []config.Sink{{Name: "d", Stdout: &config.StdoutSink{}}}}
	cfg.SetDefaults()
	d := &discard{}
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"d": d}, Logger: zap.NewNop(), clientFor: newFakeSource(0).client})
	if err != nil {
		b.Fatal(err)
	}
	ex.joinScopes(ex.rules[0], eventRes, []scopeID{{GVR: eventRes.GVR}}, false)
	return ex, ex.scopes[scopeID{GVR: eventRes.GVR}], d
}

// runEvents runs the sink's workers while push feeds b.N changes through
// the handlers, then waits for the queue to drain.
func runEvents(b *testing.B, ex *Exporter, d *discard, push func(i int)) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ex.runners[0]
	done := make(chan struct{})
	go func() { r.run(ctx, 4); close(done) }()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		push(i)
	}
	for r.queue.Len() > 0 || r.pending.len() > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(d.n.Load())/float64(b.N), "events/change")
	r.queue.ShutDown()
	cancel()
	<-done
}

// A burst of new Events, each delivered as added.
func BenchmarkPipelineEventsNew(b *testing.B) {
	ex, s, d := eventsPipeline(b, config.Watch{})
	store := s.informer.GetIndexer()
	objs := make([]*unstructured.Unstructured, b.N)
	for i := range objs {
		objs[i] = benchEvent(fmt.Sprintf("e%d", i), 1)
	}
	runEvents(b, ex, d, func(i int) {
		_ = store.Add(objs[i])
		s.onAdd(objs[i], false)
	})
}

// Count bumps of 1,000 Events, each delivered as a compact modified.
func BenchmarkPipelineEventsBump(b *testing.B) {
	ex, s, d := eventsPipeline(b, config.Watch{})
	store := s.informer.GetIndexer()
	const n = 1000
	cur := make([]*unstructured.Unstructured, n)
	for i := range cur {
		cur[i] = benchEvent(fmt.Sprintf("e%d", i), 1)
		_ = store.Add(cur[i])
		s.onAdd(cur[i], true)
	}
	next := make([]*unstructured.Unstructured, b.N)
	for i := range next {
		next[i] = benchEvent(fmt.Sprintf("e%d", i%n), 2+i/n)
		next[i].SetResourceVersion(fmt.Sprint(10 + i))
	}
	runEvents(b, ex, d, func(i int) {
		k := i % n
		old := cur[k]
		_ = store.Update(next[i])
		s.onUpdate(old, next[i])
		cur[k] = next[i]
	})
}

// The worker's path alone, one event per change (no merging, no queue):
// lookup, decide, diff, filter, envelope, encode, record.
func benchDeliverEvents(b *testing.B, w config.Watch, bump bool) {
	ex, s, d := eventsPipeline(b, w)
	store := s.informer.GetIndexer()
	r := ex.runners[0]
	ctx := context.Background()
	const n = 1000
	objs := make([]*unstructured.Unstructured, b.N)
	for i := range objs {
		if bump {
			objs[i] = benchEvent(fmt.Sprintf("e%d", i%n), 2+i/n)
			objs[i].SetResourceVersion(fmt.Sprint(10 + i))
		} else {
			objs[i] = benchEvent(fmt.Sprintf("e%d", i), 1)
		}
	}
	if bump {
		for i := 0; i < n; i++ {
			e := benchEvent(fmt.Sprintf("e%d", i), 1)
			_ = store.Add(e)
			_ = deliverOnce(ctx, r, s.keyOf(e))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = store.Update(objs[i])
		if err := deliverOnce(ctx, r, s.keyOf(objs[i])); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	want := int64(b.N)
	if bump {
		want += n
	}
	if d.n.Load() != want {
		b.Fatalf("%d events for %d changes", d.n.Load(), want)
	}
}

func BenchmarkDeliverEventNew(b *testing.B)  { benchDeliverEvents(b, config.Watch{}, false) }
func BenchmarkDeliverEventBump(b *testing.B) { benchDeliverEvents(b, config.Watch{}, true) }
func BenchmarkDeliverEventBumpFiltered(b *testing.B) {
	benchDeliverEvents(b, config.Watch{Filter: "object.type == 'Warning'"}, true)
}

// deliverOnce plans and sends one key as a worker would, outside the queue.
func deliverOnce(ctx context.Context, r *sinkRunner, k state.Key) error {
	d, err := r.prepare(ctx, keyItem(k))
	if err != nil {
		return err
	}
	r.send(ctx, d, nil)
	return nil
}
