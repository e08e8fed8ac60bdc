package exporter

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// answering is an AsyncSink whose acks come from one other goroutine, as
// JetStream's do: Publish encodes the events and queues done; the answer
// goroutine calls the dones in order. At most window publishes wait.
type answering struct {
	d       discard
	answers chan func()
}

func newAnswering(window int) *answering {
	a := &answering{answers: make(chan func(), window)}
	go func() {
		for f := range a.answers {
			f()
		}
	}()
	return a
}

func (a *answering) counter() *discard { return &a.d }

func (a *answering) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	err := a.d.Send(ctx, evs)
	select {
	case a.answers <- func() { done(err) }:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *answering) Send(ctx context.Context, evs []*event.Event) error {
	res := make(chan error, 1)
	if err := a.Publish(ctx, evs, func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

func (a *answering) Close(context.Context) error { return nil }

var configMapRes = resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespaced: true}

// configMap returns a ~1 KiB ConfigMap at version rv.
func configMap(name string, rv int) *unstructured.Unstructured {
	data := map[string]any{}
	for i := 0; i < 16; i++ {
		data[fmt.Sprintf("key-%02d", i)] = fmt.Sprintf("%052d", rv*i)
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "bench", "uid": "uid-" + name, "resourceVersion": fmt.Sprint(rv)}, "data": data}}
}

// BenchmarkDrainConfigMaps is initialList: emit over b.N existing ~1 KiB
// objects: each is added to the cache and announced as part of the
// initial list, and goes handler → queue → worker → encode → an ack from
// another goroutine → delivered state. One op is one drained object.
func BenchmarkDrainConfigMaps(b *testing.B) {
	sink := newAnswering(4096)
	ex, s, _ := pipelineOf(b, 4, sink, configMapRes, config.Watch{Resource: "configmaps", InitialList: config.InitialListEmit})
	objs := make([]*unstructured.Unstructured, b.N)
	for i := range objs {
		objs[i] = configMap(fmt.Sprintf("cm-%d", i), 1000+i)
	}
	store := s.informer.GetIndexer()
	ctx, cancel := context.WithCancel(context.Background())
	r := ex.runners[0]
	stopped := make(chan struct{})
	go func() { r.run(ctx, 4); close(stopped) }()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	s.listEnded(false, b.N) // the list's end, as the scope sees it before the informer hands out its objects
	for _, o := range objs {
		_ = store.Add(o)
		s.onAdd(o, true)
	}
	t0 := time.Now()
	for r.delivered.Load() < int64(b.N) || r.pending.len() > 0 {
		time.Sleep(100 * time.Microsecond)
		if time.Since(t0) > time.Minute {
			b.Fatalf("stuck: delivered %d pending %d encoded %d queue %d stats %+v", r.delivered.Load(), r.pending.len(), sink.d.n.Load(), r.queue.Len(), r.stats())
		}
	}
	b.StopTimer()
	// The process's CPU per drained object: the drain runs on several
	// goroutines, so ns/op (wall time) hides how much CPU it took.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	if got := sink.d.n.Load(); got != int64(b.N) {
		b.Fatalf("encoded %d events, want %d", got, b.N)
	}
	r.queue.ShutDown()
	cancel()
	<-stopped
	close(sink.answers)
}

// processCPU is the CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
