package exporter

import (
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// A paged initial list (1,200 objects in pages of 500) is the initial
// list, not a relist: no gap marker, nothing recovered.
// The initial list of 1,200 objects, paged in 500s or streamed as a
// watch-list, is no relist: no gap marker, nothing recovered.
func TestInitialListIsNotARelist(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		t.Run(listMode(streamed), func(t *testing.T) {
			src := sourceOf1200(500, !streamed)
			h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
			h.waitReady()
			evs := h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return count(e, event.Added.Type()) >= 1200 })
			checkListPath(t, src, streamed, 1)
			if n := count(evs, event.TypeGap); n != 0 {
				t.Errorf("%d gap markers for an initial list", n)
			}
			for _, e := range evs {
				if e.Data.(*event.ChangeData).Recovered {
					t.Fatalf("%s marked recovered", e.Name)
				}
			}
			if h.ex.Relists() != 0 {
				t.Errorf("relists = %d, want 0", h.ex.Relists())
			}
		})
	}
}

// A relist remembers every object it listed, paged or streamed: objects
// changed while the watch was down, on any page, arrive recovered after
// one gap marker; unchanged objects emit nothing.
func TestRelistRecoversEveryChange(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		t.Run(listMode(streamed), func(t *testing.T) {
			src := sourceOf1200(500, !streamed)
			h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
			h.waitReady()
			changed := []int{3, 600, 1100} // first, second and third page
			for _, i := range changed {
				src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "2"}), true)
			}
			src.remove(cmRes.GVR, "a", name(900), true)
			src.expire(cmRes.GVR)
			evs := h.sinks["rec"].waitFor(t, "3 modified and 1 deleted", func(e []*event.Event) bool {
				return count(e, event.Modified.Type()) >= 3 && count(e, event.Deleted.Type()) >= 1
			})
			checkRecoveredAfterOneGap(t, evs, 3, 1)
			wantOneRelist(t, h)
			checkListPath(t, src, streamed, 2)
		})
	}
}

// A relist stream that breaks before its end bookmark is abandoned: what
// it streamed is not taken for the relist, and the stream that follows
// completes it. Exactly the changes arrive, once, after one gap marker.
func TestBrokenRelistStreamIsStartedAgain(t *testing.T) {
	src := sourceOf1200(0, false)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	h.waitReady()
	for _, i := range []int{3, 1100} {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "2"}), true)
	}
	src.remove(cmRes.GVR, "a", name(900), true)
	src.mu.Lock()
	src.breakStreams = 1 // the relist's first stream ends after 600 objects
	src.mu.Unlock()
	src.expire(cmRes.GVR)
	evs := h.sinks["rec"].waitFor(t, "2 modified and 1 deleted", func(e []*event.Event) bool {
		return count(e, event.Modified.Type()) >= 2 && count(e, event.Deleted.Type()) >= 1
	})
	checkRecoveredAfterOneGap(t, evs, 2, 1)
	wantOneRelist(t, h)
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.breakStreams != 0 {
		t.Fatal("no relist stream was broken")
	}
}

// sourceOf1200 is a fake API server holding 1,200 ConfigMaps in
// namespace a (more than two list pages of 500).
func sourceOf1200(pageSize int, noWatchList bool) *fakeSource {
	src := newFakeSource(pageSize)
	src.noWatchList = noWatchList
	for i := 0; i < 1200; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), true)
	}
	return src
}

func listMode(streamed bool) string {
	if streamed {
		return "watch-list"
	}
	return "paged-list"
}

// checkListPath asserts how the reflector listed: streams watch-lists and
// no List call, or paged Lists and no stream.
func checkListPath(t *testing.T, src *fakeSource, streamed bool, cycles int) {
	t.Helper()
	src.mu.Lock()
	defer src.mu.Unlock()
	lists, streams := src.listCalls[cmRes.GVR], src.streams[cmRes.GVR]
	if streamed && (lists != 0 || streams != cycles) {
		t.Fatalf("%d List calls and %d watch-list streams, want 0 and %d", lists, streams, cycles)
	}
	if !streamed && (streams != 0 || lists < 3*cycles) {
		t.Fatalf("%d List calls and %d watch-list streams, want paged lists (>= %d) and none", lists, streams, 3*cycles)
	}
}

// checkRecoveredAfterOneGap asserts a relist's events: one gap marker
// first, then exactly the modified and deleted changes, all recovered.
func checkRecoveredAfterOneGap(t *testing.T, evs []*event.Event, modified, deleted int) {
	t.Helper()
	if evs[0].Type != event.TypeGap {
		t.Fatalf("first event %s, want the gap marker", evs[0].Type)
	}
	if n := count(evs, event.TypeGap); n != 1 {
		t.Errorf("%d gap markers, want 1", n)
	}
	for _, e := range evs[1:] {
		if !e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s %s not marked recovered", e.Type, e.Name)
		}
	}
	if len(evs) != 1+modified+deleted {
		t.Errorf("got %d events, want gap + %d modified + %d deleted:%s", len(evs), modified, deleted, summary(evs))
	}
}

func name(i int) string { return "cm-" + string(rune('a'+i/1000)) + itoa4(i%1000) }

func itoa4(i int) string {
	b := []byte{'0', '0', '0', '0'}
	for p := 3; p >= 0 && i > 0; p-- {
		b[p] = byte('0' + i%10)
		i /= 10
	}
	return string(b)
}

// wantOneRelist asserts that exactly one relist is counted. The count is
// taken once the reflector has the list's end, which can be after workers
// delivered what the relist changed: wait for it, then check it is one.
func wantOneRelist(t *testing.T, h *harness) {
	t.Helper()
	waitUntil(t, "the relist counted", func() bool { return h.ex.Relists() >= 1 })
	if n := h.ex.Relists(); n != 1 {
		t.Errorf("relists = %d, want 1", n)
	}
}
