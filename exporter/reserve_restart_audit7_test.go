package exporter

import (
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// After a restart, a sink's checkpoint already holds a record for
// (nearly) every object of a scope it knew: the first list brings no new
// records for it, so reserving room for n more would size the delivered
// state for twice what it holds, for the life of the process (a map
// never shrinks). Paged and watch-list first lists of 1,200 restored
// objects.
func TestRestoredFirstListReservesNothingAudit7(t *testing.T) {
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
			st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
			for _, u := range src.objs[cmRes.GVR] {
				rec := recordOf(u)
				rec.Scope = cmScope("")
				st.Put(Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
			}
			cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
			var h *harness
			if stream {
				h = startWLHarness(t, cfg, wl, map[string]Store{"rec": st}, nil)
			} else {
				h = startHarness(t, cfg, harnessOpts{src: src, stores: map[string]Store{"rec": st}})
			}
			h.waitReady()
			if evs := quiesce(t, h, "rec"); len(evs) != 0 {
				t.Fatalf("unchanged restored objects emitted:%s", summary(evs))
			}
			st.mu.RLock()
			reserved, held := st.reserved, len(st.m)
			st.mu.RUnlock()
			if reserved > held {
				t.Fatalf("delivered state made for %d records, holds %d: the first list of restored objects was counted as new", reserved, held)
			}
		})
	}
}
