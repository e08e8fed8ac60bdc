package exporter

import (
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
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
