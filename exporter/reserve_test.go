package exporter

import (
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// Reserve keeps every record, and makes room only when asked for more
// than the map was last made for.
func TestMemoryStoreReserveKeepsRecords(t *testing.T) {
	s := NewMemoryStore()
	for i := 0; i < 10; i++ {
		s.Put(Key{GVR: cmRes.GVR, Namespace: "a/b", Name: "n~" + string(rune('a'+i))}, Record{UID: "u", ResourceVersion: "1"})
	}
	s.Reserve(100)
	if s.reserved != 110 {
		t.Fatalf("reserved %d, want 110 (10 held + 100)", s.reserved)
	}
	s.Reserve(50) // fits what was made
	s.Reserve(0)
	s.Reserve(-5)
	if s.reserved != 110 {
		t.Fatalf("reserved %d after smaller asks, want 110", s.reserved)
	}
	n := 0
	s.Range(func(k Key, r Record) bool { n++; return r.UID == "u" })
	if n != 10 {
		t.Fatalf("%d records after Reserve, want 10", n)
	}
	if _, ok := s.Get(Key{GVR: cmRes.GVR, Namespace: "a/b", Name: "n~c"}); !ok {
		t.Fatal("a record was lost by Reserve")
	}
}

// A first list counts what it listed, less what a watch-list stream
// deleted before its end; a relist reports what it relisted.
func TestListCyclesCountTheFirstList(t *testing.T) {
	var c listCycles
	g := c.begin()
	for i := 0; i < 3; i++ {
		c.listed(g, Key{Name: string(rune('a' + i))}, "1")
	}
	c.listed(g, Key{Name: "a"}, "") // deleted during the stream
	if relisted, n := c.end(g, nil); relisted || n != 2 {
		t.Fatalf("first list: relisted %v, n %d; want false, 2", relisted, n)
	}
	g = c.begin()
	c.listed(g, Key{Name: "b"}, "2")
	if relisted, n := c.end(g, func() *gap { return &gap{} }); !relisted || n != 1 {
		t.Fatalf("relist: relisted %v, n %d; want true, 1", relisted, n)
	}
}

// A first list of 1,200 objects (three pages, or one watch-list stream)
// makes room for 1,200 records in the sink's delivered state before the
// workers record them, and every object is still delivered.
func TestFirstListReservesTheDeliveredState(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "paged", true: "watch-list"}[stream], func(t *testing.T) {
			st := NewMemoryStore()
			cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}})
			var h *harness
			if stream {
				src := newWLSource(0)
				fill(src.fakeSource, 1200)
				h = startWLHarness(t, cfg, src, map[string]Store{"rec": st}, nil)
			} else {
				src := newFakeSource(500)
				fill(src, 1200)
				h = startHarness(t, cfg, harnessOpts{src: src, stores: map[string]Store{"rec": st}})
			}
			h.waitReady()
			evs := h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return len(e) >= 1200 })
			if n := count(evs, event.Added.Type()); n != 1200 {
				t.Fatalf("%d added events, want 1200", n)
			}
			st.mu.RLock()
			reserved, held := st.reserved, 0
			for k := range st.m {
				if !isSentinel(k) {
					held++
				}
			}
			st.mu.RUnlock()
			if reserved < 1200 || held != 1200 {
				t.Fatalf("store made for %d, holds %d objects; want at least 1200 and 1200", reserved, held)
			}
		})
	}
}

// A watch-list stream that shows an object ADDED and then MODIFIED before
// its end bookmark listed one object, not two.
func TestListCyclesCountAChangeDuringTheStreamOnce(t *testing.T) {
	var c listCycles
	g := c.begin()
	c.listed(g, Key{Name: "a"}, "1")
	c.changedWhileListed(g, Key{Name: "a"}, "2")
	c.listed(g, Key{Name: "b"}, "1")
	if _, n := c.end(g, nil); n != 2 {
		t.Fatalf("first list counted %d objects, want 2", n)
	}
	// In a relist the change still moves the object's version.
	g = c.begin()
	c.listed(g, Key{Name: "a"}, "3")
	c.changedWhileListed(g, Key{Name: "a"}, "4")
	if relisted, n := c.end(g, func() *gap { return &gap{} }); !relisted || n != 1 {
		t.Fatalf("relist: %v with %d objects, want one", relisted, n)
	}
	if c.recoveredBy(Key{Name: "a"}, "4") == nil {
		t.Fatal("the relist did not take the changed version")
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
		k := Key{GVR: s.id.GVR, Namespace: "a/b", Name: "x~1"}
		if s.itemOf(k) != keyItem(k) || s.itemOf(k).key() != k {
			t.Fatalf("scope %s: item %+v, keyItem %+v", s.name, s.itemOf(k), keyItem(k))
		}
	}
	if (&scope{}).itemOf(Key{GVR: cmRes.GVR, Name: "x"}) != keyItem(Key{GVR: cmRes.GVR, Name: "x"}) {
		t.Fatal("a scope without an interned resource made another item")
	}
}
