package exporter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// A key without a tombstone (most keys) is looked up on every delivery:
// the lookup must not allocate; a key with one gets its own copy.
func TestTombstoneLookup(t *testing.T) {
	ts := &tombstones{m: map[state.Key]plan.Tombstone{}}
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x/~1"}
	if n := testing.AllocsPerRun(100, func() { _ = ts.get(k) }); n != 0 {
		t.Errorf("lookup of a key without a tombstone: %v allocations", n)
	}
	ts.put(k, plan.Tombstone{})
	got := ts.get(k)
	if got == nil {
		t.Fatal("tombstone not found")
	}
	if again := ts.get(k); again == got {
		t.Error("two lookups share one copy")
	}
}

// manualSink is an AsyncSink whose acks the test gives one by one.
type manualSink struct {
	mu   sync.Mutex
	pubs []asyncPub
	sent []*event.Event
	got  chan struct{}
}

var _ sinks.AsyncSink = (*manualSink)(nil)

func newManualSink() *manualSink { return &manualSink{got: make(chan struct{}, 100)} }

func (m *manualSink) Publish(_ context.Context, evs []*event.Event, done func(error)) error {
	var once sync.Once
	d := func(err error) { once.Do(func() { done(err) }) }
	m.mu.Lock()
	m.pubs = append(m.pubs, asyncPub{call: len(m.pubs) + 1, evs: evs, done: d})
	m.mu.Unlock()
	m.got <- struct{}{}
	return nil
}

func (m *manualSink) Send(_ context.Context, evs []*event.Event) error {
	m.mu.Lock()
	m.sent = append(m.sent, evs...)
	m.mu.Unlock()
	return nil
}

func (m *manualSink) Close(context.Context) error {
	m.mu.Lock()
	pubs := m.pubs
	m.pubs = nil
	m.mu.Unlock()
	for _, p := range pubs {
		if p.done != nil {
			p.done(sinks.Permanent(context.Canceled))
		}
	}
	return nil
}

// next waits for the next publish (a liveness bound, not a timing assertion).
func (m *manualSink) next(t *testing.T) asyncPub {
	t.Helper()
	select {
	case <-m.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no publish came")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pubs[len(m.pubs)-1]
	return p
}

// A live deletion of an object whose first delivery still awaits its ack:
// the periodic tombstone prune runs while the ack is outstanding and
// finds no delivered record of the key (it is Put only on ack), yet keeps
// the final state, since the key is in flight. When the ack comes, the
// deletion carries the final state the watch delivered, live: not
// recovered (inferred), not the added state's resourceVersion.
func TestDeletionWhileAddInFlightKeepsFinalState(t *testing.T) {
	sink := newManualSink()
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{sink: sink})
	h.waitReady()
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	add := sink.next(t)
	if len(add.evs) != 1 || add.evs[0].Change() != "added" {
		t.Fatalf("first publish: %s", summary(add.evs))
	}
	h.src.remove(cmRes.GVR, "a", "x", false)
	// Wait until the watch's deletion reached the exporter (its tombstone).
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	deadline := time.Now().Add(20 * time.Second)
	for h.ex.tombstones.get(k) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no tombstone")
		}
		time.Sleep(time.Millisecond)
	}
	final := h.ex.tombstones.get(k).Obj.GetResourceVersion()
	// The prune tick, while the add's ack is outstanding.
	h.ex.tombstones.prune(h.ex.runners)
	add.done(nil)
	del := sink.next(t)
	del.done(nil)
	if len(del.evs) != 1 || del.evs[0].Change() != "deleted" {
		t.Fatalf("second publish: %s", summary(del.evs))
	}
	d, _ := del.evs[0].Data.(*event.ChangeData)
	if d == nil {
		t.Fatalf("deleted event has no change data: %s", summary(del.evs))
	}
	if d.Recovered {
		t.Errorf("a live deletion seen by the watch was sent as recovered (inferred), its final state lost")
	}
	if rv, _ := d.Object["metadata"].(map[string]any)["resourceVersion"].(string); rv != final {
		t.Errorf("deleted event carries resourceVersion %q, the watch's final state was %q", rv, final)
	}
}

// The informer drops a deleted object from its cache before its handler
// stores the final state. A worker that looks in between waits for that
// state rather than infer the deletion from the last delivered one: the
// deletion carries the id of its own version (as on a sink that saw the
// final state), not of the last delivered version.
func TestDeletionSeenBeforeItsFinalStateWaitsForIt(t *testing.T) {
	src := newFakeSource(0)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	h.waitReady()
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x/~1"}
	u := src.apply(cmRes.GVR, cm("a", "x/~1", map[string]any{"v": "1"}), false)
	h.sinks["rec"].waitFor(t, "the added event", func(e []*event.Event) bool { return len(e) == 1 })
	s := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}]
	cached, _, _ := s.informer.GetIndexer().GetByKey(k.CacheKey())
	// As the informer does before it calls the handler: out of the cache,
	// and a worker takes the key.
	if err := s.informer.GetIndexer().Delete(cached); err != nil {
		t.Fatal(err)
	}
	r := h.ex.runners[0]
	r.enqueue(s.itemOf(k), nil)
	time.Sleep(50 * time.Millisecond)
	// The handler runs with the final state.
	final := u.DeepCopy()
	final.SetResourceVersion("99")
	s.onDelete(final)
	evs := h.sinks["rec"].waitFor(t, "the deletion", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	var del *event.Event
	for _, e := range evs {
		if e.Type == event.Deleted.Type() {
			del = e
		}
	}
	if want := event.ID(string(u.GetUID()), "99", event.Deleted); del.ID != want || del.Data.(*event.ChangeData).Recovered {
		t.Errorf("deletion %s recovered=%v, want %s, live", del.ID, del.Data.(*event.ChangeData).Recovered, want)
	}
}
