package exporter

import (
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/internal/fixture"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A resync emits nothing for objects the sink has.
func TestResyncEmitsNothing(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.ResyncPeriod.Duration = 20 * time.Millisecond
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	h.sinks["rec"].waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	time.Sleep(200 * time.Millisecond) // about ten resyncs
	if evs := h.sinks["rec"].got(); len(evs) != 1 {
		t.Fatalf("resyncs emitted:%s", summary(evs))
	}
}

// A scope's items are the items keyItem makes of its keys: the queue and
// the pending set see one key whichever made the item.
func TestScopeItemsAreKeyItems(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	h := startHarness(t, cfg, harnessOpts{})
	h.waitReady()
	if len(h.ex.scopes) == 0 {
		t.Fatal("no scope started")
	}
	for _, s := range h.ex.scopes {
		k := state.Key{GVR: s.id.GVR, Namespace: "a/b", Name: "x~1"}
		if s.itemOf(k) != keyItem(k) || s.itemOf(k).key() != k {
			t.Fatalf("scope %s: item %+v, keyItem %+v", s.name, s.itemOf(k), keyItem(k))
		}
	}
	if (&scope{}).itemOf(state.Key{GVR: cmRes.GVR, Name: "x"}) != keyItem(state.Key{GVR: cmRes.GVR, Name: "x"}) {
		t.Fatal("a scope without an interned resource made another item")
	}
}

// A first list of 1,200 objects (three pages, or one watch-list stream)
// makes room for 1,200 records in the sink's delivered state before the
// workers record them, and every object is still delivered.
func TestFirstListReservesTheDeliveredState(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "paged", true: "watch-list"}[stream], func(t *testing.T) {
			st := state.NewMemoryStore()
			cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}})
			var h *harness
			if stream {
				src := newWLSource(0)
				fill(src.fakeSource, 1200)
				h = startWLHarness(t, cfg, src, map[string]state.Store{"rec": st}, nil)
			} else {
				src := newFakeSource(500)
				fill(src, 1200)
				h = startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
			}
			h.waitReady()
			evs := h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return len(e) >= 1200 })
			if n := count(evs, event.Added.Type()); n != 1200 {
				t.Fatalf("%d added events, want 1200", n)
			}
			// A delivered state is recorded once the sink's Send returned,
			// after the sink holds the event.
			held := func() int {
				n := 0
				st.Range(func(k state.Key, _ state.Record) bool {
					if !isSentinel(k) {
						n++
					}
					return true
				})
				return n
			}
			waitUntil(t, "1200 delivered records", func() bool { return held() == 1200 })
			if reserved, held := st.Capacity(), held(); reserved < 1200 || held != 1200 {
				t.Fatalf("store made for %d, holds %d objects; want at least 1200 and 1200", reserved, held)
			}
		})
	}
}

// After a restart, a sink's checkpoint already holds a record for
// (nearly) every object of a scope it knew: the first list brings no new
// records for it, so reserving room for n more would size the delivered
// state for twice what it holds, for the life of the process (a map
// never shrinks). Paged and watch-list first lists of 1,200 restored
// objects.
func TestRestoredFirstListReservesNothing(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "paged", true: "watch-list"}[stream], func(t *testing.T) {
			var src *fakeSource
			var wl *wlSource
			if stream {
				wl = newWLSource(0)
				src = wl.fakeSource
			} else {
				src = newFakeSource(500)
			}
			fill(src, 1200)
			st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
			for _, u := range src.objs[cmRes.GVR] {
				rec := recordOf(u)
				rec.Scope = cmScope("")
				st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
			}
			cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
			var h *harness
			if stream {
				h = startWLHarness(t, cfg, wl, map[string]state.Store{"rec": st}, nil)
			} else {
				h = startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
			}
			h.waitReady()
			if evs := quiesce(t, h, "rec"); len(evs) != 0 {
				t.Fatalf("unchanged restored objects emitted:%s", summary(evs))
			}
			reserved, held := st.Capacity(), st.Len()
			if reserved > held {
				t.Fatalf("delivered state made for %d records, holds %d: the first list of restored objects was counted as new", reserved, held)
			}
		})
	}
}

// listEnded of a first list reserves on every routed store that can, and
// only there; with no table it does nothing; a superseded cycle's end (0)
// changes nothing; and it runs while routes are swapped concurrently.
func TestListEndedReservesPerRoute(t *testing.T) {
	var bare scope // no table
	bare.listEnded(false, 10)

	st1, st2 := state.NewMemoryStore(), state.NewMemoryStore()
	plainStore := &storeWithoutReserve{MemoryStore: state.NewMemoryStore()}
	s := &scope{}
	s.tab.Store(&scopeTable{routes: []route{{sink: &sinkRunner{store: st1}}, {sink: &sinkRunner{store: plainStore}}}})
	s.listEnded(false, 0)
	if st1.Capacity() != 0 {
		t.Fatalf("an end with nothing listed reserved %d", st1.Capacity())
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			s.update(func(t *scopeTable) {
				if i%2 == 0 {
					t.routes = append(t.routes, route{sink: &sinkRunner{store: st2}})
				} else {
					t.routes = t.routes[:2]
				}
			})
		}
	}()
	for i := 1; i <= 200; i++ {
		s.listEnded(false, i)
	}
	wg.Wait()
	s.update(func(t *scopeTable) { t.routes = append(t.routes, route{sink: &sinkRunner{store: st2}}) })
	s.listEnded(false, 300)
	if st1.Capacity() != 300 || st2.Capacity() != 300 {
		t.Fatalf("reserved %d and %d, want 300 each", st1.Capacity(), st2.Capacity())
	}
	if plainStore.Capacity() != 0 {
		t.Fatalf("a store without Reserve was reserved through its embedded map")
	}
}

// storeWithoutReserve is a Store that hides MemoryStore's Reserve (a user's
// store without it).
type storeWithoutReserve struct{ *state.MemoryStore }

func (p *storeWithoutReserve) Reserve() {}

// keyOf agrees with GetNamespace and GetName for every odd metadata shape.
func TestKeyOfOddMetadata(t *testing.T) {
	s := &scope{}
	for name, obj := range fixture.OddMetadata() {
		u := &unstructured.Unstructured{Object: obj}
		if k := s.keyOf(u); k.Namespace != u.GetNamespace() || k.Name != u.GetName() {
			t.Errorf("%s: keyOf = %+v", name, k)
		}
	}
}
