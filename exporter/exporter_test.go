package exporter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
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
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
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

// Run closes its sinks and stops its informers on every way out, also
// when it ends before anything synced.
func TestRunClosesSinksWhenStoppedEarly(t *testing.T) {
	src := newFakeSource(0)
	src.listErr[cmRes.GVR] = errors.New("connection refused")
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	time.Sleep(50 * time.Millisecond)
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !h.sinks["rec"].closed {
		t.Error("sink not closed")
	}
	for _, s := range h.ex.scopeSet() {
		select {
		case <-s.stop:
		default:
			t.Errorf("scope %s still running", s.name)
		}
	}
}

// Ending SendContext (the Lease was lost) cancels a send in flight at
// once instead of draining.
func TestEndedSendContextCancelsInflight(t *testing.T) {
	src := newFakeSource(0)
	sends, abort := context.WithCancel(context.Background())
	defer abort()
	started := make(chan struct{})
	blocking := &blockingSink{started: started}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sends: sends, sink: blocking})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	<-started
	abort()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still draining after the abort")
	}
	if !errors.Is(blocking.err, context.Canceled) {
		t.Errorf("send ended with %v, want canceled", blocking.err)
	}
}

type blockingSink struct {
	started chan struct{}
	once    sync.Once
	err     error
}

func (b *blockingSink) Send(ctx context.Context, _ []*event.Event) error {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	b.err = ctx.Err()
	return ctx.Err()
}

func (b *blockingSink) Close(context.Context) error { return nil }
