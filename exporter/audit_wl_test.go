package exporter

import (
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// Audit of the watch-list change: list cycles fed by streams (and paged
// Lists as the fallback) under streams that break, expire, stall, carry
// other events than ADDED, or switch to paged Lists mid-life.

// quiesce waits until the sink has no key waiting or in flight, then
// returns what it got.
func quiesce(t *testing.T, h *harness, sink string) []*event.Event {
	t.Helper()
	r := h.ex.runners[0]
	waitUntil(t, "no key pending", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	return h.sinks[sink].got()
}

// checkFirstList asserts an initial list: n added events, none recovered,
// no gap marker, no relist counted.
func checkFirstList(t *testing.T, h *harness, evs []*event.Event, n int) {
	t.Helper()
	if got := count(evs, event.Added.Type()); got != n || len(evs) != n {
		t.Fatalf("%d added of %d events, want %d added only", got, len(evs), n)
	}
	for _, e := range evs {
		if e.Data.(*event.ChangeData).Recovered {
			t.Fatalf("%s of the initial list marked recovered", e.Name)
		}
	}
	if h.ex.Relists() != 0 {
		t.Fatalf("relists = %d after the initial list, want 0", h.ex.Relists())
	}
}

func fill(src *fakeSource, n int) {
	for i := 0; i < n; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), true)
	}
}

// changeWhileDown modifies objects 3 and 1100 and deletes 900, quietly.
func changeWhileDown(src *fakeSource) {
	for _, i := range []int{3, 1100} {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "2"}), true)
	}
	src.remove(cmRes.GVR, "a", name(900), true)
}

// The first stream breaks half-way (no bookmark), the next completes: the
// initial list is still no relist, and a later relist recovers exactly
// what changed.
func TestWLFirstStreamBrokenThenComplete(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 1200)
	src.breakStreams = 1
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), src, nil, nil)
	h.waitReady()
	h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return len(e) >= 1200 })
	checkFirstList(t, h, quiesce(t, h, "rec"), 1200)
	if n := src.streamsOpened(); n != 2 {
		t.Fatalf("%d streams, want the broken one and its retry", n)
	}
	changeWhileDown(src.fakeSource)
	relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
	h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 1200+4 })
	checkRecoveredAfterOneGap(t, quiesce(t, h, "rec")[1200:], 2, 1)
}

// A relist stream that ends with 410 Gone half-way is retried; the first
// list's stream ending so is no relist either.
func TestWLGoneDuringStream(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(map[bool]string{true: "first-list", false: "relist"}[first], func(t *testing.T) {
			src := newWLSource(0)
			fill(src.fakeSource, 1200)
			broken := 2
			if first {
				broken = 1
			}
			src.script = func(n int, evs []watch.Event) ([]watch.Event, bool) {
				if n == broken {
					return append(evs[:len(evs)/2:len(evs)/2], goneEvent()), true
				}
				return evs, false
			}
			h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, nil, nil)
			h.waitReady()
			changeWhileDown(src.fakeSource)
			waitWatching(t, src.fakeSource, cmRes.GVR)
			relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
			h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 4 })
			checkRecoveredAfterOneGap(t, quiesce(t, h, "rec"), 2, 1)
			wantOneRelist(t, h)
		})
	}
}

// A relist stream that carries MODIFIED and DELETED events before its end
// bookmark: the object modified in the stream arrives recovered at its
// last version, the one deleted in the stream as a recovered deletion;
// nothing else.
func TestWLModifiedAndDeletedInsideRelistStream(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 50)
	old5 := src.objs[cmRes.GVR]["a/"+name(5)].DeepCopy()
	old7 := src.objs[cmRes.GVR]["a/"+name(7)].DeepCopy()
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, nil, nil)
	h.waitReady()
	waitWatching(t, src.fakeSource, cmRes.GVR)
	// While the watch is down: 5 changes, 7 is deleted. The relist stream
	// shows both first as they were, then the change and the deletion.
	new5 := src.apply(cmRes.GVR, cm("a", name(5), map[string]any{"v": "2"}), true)
	src.remove(cmRes.GVR, "a", name(7), true)
	src.mu.Lock()
	rv := src.rv
	src.mu.Unlock()
	src.script = func(n int, evs []watch.Event) ([]watch.Event, bool) {
		if n != 2 {
			return evs, false
		}
		var out []watch.Event
		for _, ev := range evs {
			if ev.Type != watch.Added {
				continue
			}
			u := ev.Object.(*unstructured.Unstructured)
			if u.GetName() == name(5) {
				u = old5.DeepCopy()
			}
			out = append(out, watch.Event{Type: watch.Added, Object: u})
		}
		out = append(out, watch.Event{Type: watch.Added, Object: old7.DeepCopy()},
			watch.Event{Type: watch.Modified, Object: new5.DeepCopy()})
		gone := old7.DeepCopy()
		gone.SetResourceVersion(strconv.Itoa(rv))
		out = append(out, watch.Event{Type: watch.Deleted, Object: gone}, initialEnd(rv))
		return out, false
	}
	relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
	h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 3 })
	evs := quiesce(t, h, "rec")
	checkRecoveredAfterOneGap(t, evs, 1, 1)
	for _, e := range evs[1:] {
		if e.Type == event.Modified.Type() && e.ResourceVersion != new5.GetResourceVersion() {
			t.Errorf("modified at %s, want %s", e.ResourceVersion, new5.GetResourceVersion())
		}
	}
}

// Names with '/' and '~' go through a streamed and a paged relist.
func TestWLOddNamesRelisted(t *testing.T) {
	for _, streamed := range []bool{true, false} {
		t.Run(listMode(streamed), func(t *testing.T) {
			src := newWLSource(2)
			src.noWatchList = !streamed
			odd := []string{"a~b", "x/y~1/z", "~0", "/lead", "trail/"}
			for _, n := range odd {
				src.apply(cmRes.GVR, cm("a", n, map[string]any{"v": "1"}), true)
			}
			h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, nil, nil)
			h.waitReady()
			waitWatching(t, src.fakeSource, cmRes.GVR)
			src.apply(cmRes.GVR, cm("a", "x/y~1/z", map[string]any{"v": "2"}), true)
			src.apply(cmRes.GVR, cm("a", "~0", map[string]any{"v": "2"}), true)
			src.remove(cmRes.GVR, "a", "a~b", true)
			calls := src.streamsOpened
			if !streamed {
				calls = func() int { src.mu.Lock(); defer src.mu.Unlock(); return src.listCalls[cmRes.GVR] }
			}
			relistNow(t, src.fakeSource, cmRes.GVR, calls)
			h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 4 })
			evs := quiesce(t, h, "rec")
			checkRecoveredAfterOneGap(t, evs, 2, 1)
			got := map[string]string{}
			for _, e := range evs[1:] {
				got[e.Name] = e.Type
			}
			if got["x/y~1/z"] != event.Modified.Type() || got["~0"] != event.Modified.Type() || got["a~b"] != event.Deleted.Type() {
				t.Errorf("got %v", got)
			}
		})
	}
}

// A bookmark without the initial-events-end annotation in the middle of a
// stream does not end its cycle, on the first list or a relist.
func TestWLBookmarkWithoutAnnotation(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 1200)
	src.script = func(n int, evs []watch.Event) ([]watch.Event, bool) {
		half := len(evs) / 2
		out := append([]watch.Event(nil), evs[:half]...)
		out = append(out, plainBookmark(1))
		return append(out, evs[half:]...), false
	}
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), src, nil, nil)
	h.waitReady()
	h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return len(e) >= 1200 })
	checkFirstList(t, h, quiesce(t, h, "rec"), 1200)
	changeWhileDown(src.fakeSource)
	relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
	h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 1204 })
	checkRecoveredAfterOneGap(t, quiesce(t, h, "rec")[1200:], 2, 1)
}

// A stream that breaks after its end bookmark (and after a live event:
// client-go relists after a watch that ends within a second without any)
// is no relist: the reflector watches on from where it was, and later
// changes are live.
func TestWLStreamBrokenAfterBookmark(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 20)
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, nil, nil)
	h.waitReady()
	waitWatching(t, src.fakeSource, cmRes.GVR)
	src.apply(cmRes.GVR, cm("a", name(3), map[string]any{"v": "2"}), false)
	h.sinks["rec"].waitFor(t, "the first change", func(e []*event.Event) bool { return len(e) >= 1 })
	closeWatches(src.fakeSource, cmRes.GVR)
	waitWatching(t, src.fakeSource, cmRes.GVR)
	src.apply(cmRes.GVR, cm("a", name(4), map[string]any{"v": "2"}), false)
	h.sinks["rec"].waitFor(t, "the second change", func(e []*event.Event) bool { return len(e) >= 2 })
	evs := quiesce(t, h, "rec")
	if len(evs) != 2 || count(evs, event.Modified.Type()) != 2 {
		t.Fatalf("got%s, want two live modified events", summary(evs))
	}
	for _, e := range evs {
		if e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s marked recovered", e.Name)
		}
	}
	if n := src.streamsOpened(); n != 1 || h.ex.Relists() != 0 {
		t.Fatalf("%d streams and %d relists, want 1 and 0", n, h.ex.Relists())
	}
}

// The API server starts or stops serving watch-list between the first
// list and the relist: the relist is told on either path.
func TestWLFallbackMidLife(t *testing.T) {
	for _, firstStreamed := range []bool{true, false} {
		t.Run(map[bool]string{true: "streamed-then-paged", false: "paged-then-streamed"}[firstStreamed], func(t *testing.T) {
			src := newWLSource(500)
			src.noWatchList = !firstStreamed
			fill(src.fakeSource, 1200)
			h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), src, nil, nil)
			h.waitReady()
			h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return len(e) >= 1200 })
			checkFirstList(t, h, quiesce(t, h, "rec"), 1200)
			waitWatching(t, src.fakeSource, cmRes.GVR)
			changeWhileDown(src.fakeSource)
			src.mu.Lock()
			src.noWatchList = firstStreamed
			lists, streams := src.listCalls[cmRes.GVR], src.n
			src.mu.Unlock()
			relistNow(t, src.fakeSource, cmRes.GVR, func() int {
				src.mu.Lock()
				defer src.mu.Unlock()
				return src.listCalls[cmRes.GVR] + src.n
			})
			h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 1204 })
			checkRecoveredAfterOneGap(t, quiesce(t, h, "rec")[1200:], 2, 1)
			wantOneRelist(t, h)
			src.mu.Lock()
			defer src.mu.Unlock()
			if firstStreamed && (src.listCalls[cmRes.GVR] < lists+3 || src.n != streams) {
				t.Errorf("the relist was not paged: %d List calls, %d streams", src.listCalls[cmRes.GVR]-lists, src.n-streams)
			}
			if !firstStreamed && (src.listCalls[cmRes.GVR] != lists || src.n != streams+1) {
				t.Errorf("the relist was not streamed: %d List calls, %d streams", src.listCalls[cmRes.GVR]-lists, src.n-streams)
			}
		})
	}
}

// A label selector: a relist finds an object that lost the label (gone
// from the scope), one that gained it, and one that changed.
func TestWLLabelSelectorRelist(t *testing.T) {
	src := newWLSource(0)
	web := func(n, v string, labelled bool) *unstructured.Unstructured {
		u := cm("a", n, map[string]any{"v": v})
		if labelled {
			u.SetLabels(map[string]string{"app": "web"})
		}
		return u
	}
	src.apply(cmRes.GVR, web("keep", "1", true), true)
	src.apply(cmRes.GVR, web("leave", "1", true), true)
	src.apply(cmRes.GVR, web("join", "1", false), true)
	src.apply(cmRes.GVR, web("same", "1", true), true)
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps", LabelSelector: "app=web"}}), src, nil, nil)
	h.waitReady()
	waitWatching(t, src.fakeSource, cmRes.GVR)
	src.apply(cmRes.GVR, web("keep", "2", true), true)
	src.apply(cmRes.GVR, web("leave", "1", false), true)
	src.apply(cmRes.GVR, web("join", "1", true), true)
	relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
	h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 4 })
	evs := quiesce(t, h, "rec")
	got := map[string]string{}
	for _, e := range evs[1:] {
		got[e.Name] = e.Type
	}
	if evs[0].Type != event.TypeGap || len(evs) != 4 || got["keep"] != event.Modified.Type() || got["leave"] != event.Deleted.Type() || got["join"] != event.Added.Type() {
		t.Fatalf("got%s", summary(evs))
	}
	for _, e := range evs[1:] {
		if !e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s %s not recovered", e.Type, e.Name)
		}
	}
}

// The stall watchdog stops a stream that stopped half-way (no bookmark),
// on the first list and on a relist: the first list stays no relist, the
// relist recovers exactly what changed after one gap marker.
func TestWLStallWatchdogDuringStream(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 1200)
	stalled := map[int]bool{}
	src.script = func(n int, evs []watch.Event) ([]watch.Event, bool) {
		// The first attempt of each list stalls after half its objects
		// (stream 2 is the first list's second attempt).
		if n == 1 || n == 3 {
			stalled[n] = true
			return evs[:len(evs)/2], false
		}
		return evs, false
	}
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListSkip}})
	cfg.WatchTimeout.Duration = 300 * time.Millisecond
	h := startWLHarness(t, cfg, src, nil, nil)
	h.waitReady()
	if evs := quiesce(t, h, "rec"); len(evs) != 0 {
		t.Fatalf("initialList skip emitted%s", summary(evs))
	}
	changeWhileDown(src.fakeSource)
	relistNow(t, src.fakeSource, cmRes.GVR, src.streamsOpened)
	h.sinks["rec"].waitFor(t, "the relist's changes", func(e []*event.Event) bool { return len(e) >= 4 })
	checkRecoveredAfterOneGap(t, quiesce(t, h, "rec"), 2, 1)
	wantOneRelist(t, h)
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(stalled) != 2 {
		t.Fatalf("stalled streams %v, want the first list's and the relist's", stalled)
	}
}

// A restart whose first list is streamed, and whose first stream breaks:
// the checkpoint is compared with it after one restart gap marker
// (changed and deleted objects recovered, unchanged ones silent), and no
// relist is seen.
func TestWLRestoreWithStreamedFirstList(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 1200)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	for _, u := range src.objs[cmRes.GVR] {
		rec := recordOf(u)
		rec.Scope = cmScope("")
		st.Put(Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	changeWhileDown(src.fakeSource)
	src.breakStreams = 1
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, map[string]Store{"rec": st}, nil)
	h.waitReady()
	h.sinks["rec"].waitFor(t, "the changes while down", func(e []*event.Event) bool { return len(e) >= 4 })
	evs := quiesce(t, h, "rec")
	checkRecoveredAfterOneGap(t, evs, 2, 1)
	if d, _ := evs[0].Data.(*event.GapData); d == nil || d.Reason != GapRestart {
		t.Errorf("gap marker %+v, want a restart gap", evs[0].Data)
	}
	if h.ex.Relists() != 0 {
		t.Errorf("relists = %d, want 0", h.ex.Relists())
	}
}
