package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/internal/fixture"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks"
)

func pod(name string, rv int) *unstructured.Unstructured { return fixture.Pod(name, rv) }

func BenchmarkDecodePod(b *testing.B) {
	raw, _ := json.Marshal(pod("p", 1).Object)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiffPod(b *testing.B) {
	a, c := pod("p", 1), pod("p", 2)
	b.ReportAllocs()
	for b.Loop() {
		ops := jsonpatch.Diff(a.Object, c.Object)
		_ = jsonpatch.ChangedPaths(ops)
	}
}

// discard acknowledges everything after encoding it, as a JSON sink would.
type discard struct{ n atomic.Int64 }

func (d *discard) Send(_ context.Context, evs []*event.Event) error {
	for _, e := range evs {
		if _, err := event.Marshal(e); err != nil {
			return sinks.Permanent(err)
		}
	}
	d.n.Add(int64(len(evs)))
	return nil
}
func (d *discard) Close(context.Context) error { return nil }

// pipeline builds an exporter whose one scope is an informer that is never
// run: the benchmark writes its store and calls its handler, as a watch
// would, so handler → queue → worker → sink runs without an API server.
func pipeline(b *testing.B, workers int, sink sinks.Sink) (*Exporter, *scope, *discard) {
	return pipelineOf(b, workers, sink, fixture.Pods, config.Watch{Resource: "pods"})
}

// pipelineOf is pipeline with the rule w over res.
func pipelineOf(b *testing.B, workers int, sink sinks.Sink, res resource.Resource, w config.Watch) (*Exporter, *scope, *discard) {
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Workers: workers,
		Watch: []config.Watch{w}, Sinks: []config.Sink{{Name: "d", Stdout: &config.StdoutSink{}}}}
	cfg.SetDefaults()
	d := &discard{}
	if sink == nil {
		sink = d
	}
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"d": sink}, Logger: zap.NewNop(), clientFor: newFakeSource(0).client})
	if err != nil {
		b.Fatal(err)
	}
	ex.joinScopes(ex.rules[0], res, []scopeID{{GVR: res.GVR}}, false)
	s := ex.scopes[scopeID{GVR: res.GVR}]
	return ex, s, d
}

func benchPipeline(b *testing.B, objects int, mk func(name string, rv int) *unstructured.Unstructured) {
	benchPipelineTo(b, objects, mk, nil)
}

// benchPipelineTo runs the pipeline into sink (nil: discard). There are
// at least as many objects as changes (b.N), so each object changes at most
// once and no two versions of one can merge in the queue: the rate is at
// 1.0 events per change, whatever the backlog.
func benchPipelineTo(b *testing.B, objects int, mk func(name string, rv int) *unstructured.Unstructured, sink sinks.Sink) {
	objects = max(objects, b.N)
	ex, s, d := pipeline(b, 4, sink)
	if sink != nil {
		d = sink.(interface{ counter() *discard }).counter()
	}
	store := s.informer.GetIndexer()
	cur := make([]*unstructured.Unstructured, objects)
	for i := range cur {
		cur[i] = mk(fmt.Sprintf("p%d", i), 1)
		_ = store.Add(cur[i])
		s.onAdd(cur[i], true) // baseline, as initialList: skip
	}
	// Versions prepared up front: the benchmark measures the pipeline, not
	// object construction.
	var next [2][]*unstructured.Unstructured
	for v := range next {
		next[v] = make([]*unstructured.Unstructured, objects)
		for i := range next[v] {
			next[v][i] = mk(fmt.Sprintf("p%d", i), 2+v)
		}
	}
	var wg = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	r := ex.runners[0]
	go func() { r.run(ctx, 4); close(wg) }()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for i := 0; i < b.N; i++ {
		k := i % objects
		old := cur[k]
		// A new version: the other content, a new resourceVersion (a
		// shallow copy, as objects in the cache are never modified).
		src := next[(i/objects)%2][k]
		obj := make(map[string]any, len(src.Object))
		for kk, vv := range src.Object {
			obj[kk] = vv
		}
		md := make(map[string]any, 8)
		for kk, vv := range src.Object["metadata"].(map[string]any) {
			md[kk] = vv
		}
		md["resourceVersion"] = fmt.Sprint(i + 10)
		obj["metadata"] = md
		nw := &unstructured.Unstructured{Object: obj}
		_ = store.Update(nw)
		s.onUpdate(old, nw)
		cur[k] = nw
		sent++
	}
	// Wait for the queue to drain and the acks to come; merged versions
	// count once.
	for r.queue.Len() > 0 || r.pending.len() > 0 {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(d.n.Load())/float64(sent), "events/change")
	r.queue.ShutDown()
	cancel()
	<-wg
}

func BenchmarkPipelinePods(b *testing.B) { benchPipeline(b, 1000, pod) }

func BenchmarkPipelineConfigMaps(b *testing.B) {
	benchPipeline(b, 1000, func(name string, rv int) *unstructured.Unstructured {
		data := map[string]any{}
		for i := 0; i < 16; i++ {
			data[fmt.Sprintf("key-%02d", i)] = fmt.Sprintf("%052d", rv*i)
		}
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": "bench", "uid": "uid-" + name, "resourceVersion": fmt.Sprint(rv)}, "data": data}}
	})
}

// lagged is an AsyncSink one network hop away: it encodes each event and
// acknowledges lag later, with at most window publishes outstanding.
type lagged struct {
	d      discard
	lag    time.Duration
	window chan struct{}
}

func (l *lagged) counter() *discard { return &l.d }

func (l *lagged) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	select {
	case l.window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	err := l.d.Send(ctx, evs)
	time.AfterFunc(l.lag, func() { <-l.window; done(err) })
	return nil
}

func (l *lagged) Send(ctx context.Context, evs []*event.Event) error {
	res := make(chan error, 1)
	if err := l.Publish(ctx, evs, func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

func (l *lagged) Close(context.Context) error { return nil }

// BenchmarkPipelineWindowPods is the Pod pipeline into a sink whose acks
// take 2 ms (1 ms each way), through a window of 4096: what the window
// buys over one round trip per worker.
func BenchmarkPipelineWindowPods(b *testing.B) {
	benchPipelineTo(b, 1000, pod, &lagged{lag: 2 * time.Millisecond, window: make(chan struct{}, 4096)})
}
