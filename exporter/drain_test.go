package exporter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// gateSink holds every publish until release is closed, then acks at once.
type gateSink struct {
	mu      sync.Mutex
	held    []asyncPub
	acked   []*event.Event
	release chan struct{}
	once    sync.Once
}

func (g *gateSink) Publish(_ context.Context, evs []*event.Event, done func(error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.release:
		g.acked = append(g.acked, evs...)
		go done(nil)
	default:
		g.held = append(g.held, asyncPub{evs: evs, done: done})
	}
	return nil
}

func (g *gateSink) Send(ctx context.Context, evs []*event.Event) error {
	res := make(chan error, 1)
	_ = g.Publish(ctx, evs, func(err error) { res <- err })
	return <-res
}

func (g *gateSink) open() {
	g.once.Do(func() {
		g.mu.Lock()
		close(g.release)
		held := g.held
		g.held = nil
		for _, p := range held {
			g.acked = append(g.acked, p.evs...)
		}
		g.mu.Unlock()
		for _, p := range held {
			p.done(nil)
		}
	})
}

func (g *gateSink) Close(context.Context) error { g.open(); return nil }

func (g *gateSink) heldCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// A change noted while the key's previous version awaits its ack at
// shutdown is still delivered by the drain: the key goes back into the
// queue when the ack settles, after the workers found the queue empty.
func TestDrainDeliversChangeNotedDuringOutstandingAck(t *testing.T) {
	sink := &gateSink{release: make(chan struct{})}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{sink: sink})
	h.waitReady()
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	waitUntil(t, "the first version held", func() bool { return sink.heldCount() == 1 })
	v2 := h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), false)
	r := h.ex.byName["rec"]
	waitUntil(t, "the second change noted", func() bool { return r.pending.snapshot(keyItem(k)).gen >= 2 })
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	waitUntil(t, "the queue shut down", r.queue.ShuttingDown)
	sink.open()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if n := len(sink.acked); n == 0 || sink.acked[n-1].ResourceVersion != v2.GetResourceVersion() {
		t.Fatalf("drain ended without the second version: %s", summary(sink.acked))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
