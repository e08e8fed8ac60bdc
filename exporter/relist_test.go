package exporter

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
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

// fill applies n ConfigMaps a/<name(i)>, quietly.
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

// What a superseded cycle still reports (a stream or a paged List that
// was abandoned) never counts: not its objects, not its end.
func TestSupersededCycleIgnored(t *testing.T) {
	var c listCycles
	g1 := c.begin()
	if _, _ = c.end(g1, "", nil); c.completed != 1 {
		t.Fatal("the first list did not complete")
	}
	newGap := func() *gap { return &gap{} }
	old := c.begin() // a relist stream that breaks
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	cur := c.begin() // its retry
	c.listed(old, k, "7")
	if relisted, _ := c.end(old, "", newGap); relisted {
		t.Fatal("a superseded cycle completed a relist")
	}
	if relisted, n := c.end(cur, "", newGap); !relisted || n != 0 {
		t.Fatalf("the current cycle: relisted %v with %d objects, want a relist of 0 (the old one's object ignored)", relisted, n)
	}
	if c.recoveredBy(k, "7") != nil {
		t.Fatal("an object of the superseded cycle was taken for the relist's")
	}
}

// A first list counts what it listed, less what a watch-list stream
// deleted before its end; a relist reports what it relisted.
func TestListCyclesCountTheFirstList(t *testing.T) {
	var c listCycles
	g := c.begin()
	for i := 0; i < 3; i++ {
		c.listed(g, state.Key{Name: string(rune('a' + i))}, "1")
	}
	c.listed(g, state.Key{Name: "a"}, "") // deleted during the stream
	if relisted, n := c.end(g, "", nil); relisted || n != 2 {
		t.Fatalf("first list: relisted %v, n %d; want false, 2", relisted, n)
	}
	g = c.begin()
	c.listed(g, state.Key{Name: "b"}, "2")
	if relisted, n := c.end(g, "", func() *gap { return &gap{} }); !relisted || n != 1 {
		t.Fatalf("relist: relisted %v, n %d; want true, 1", relisted, n)
	}
}

// A watch-list stream that shows an object ADDED and then MODIFIED before
// its end bookmark listed one object, not two.
func TestListCyclesCountAChangeDuringTheStreamOnce(t *testing.T) {
	var c listCycles
	g := c.begin()
	c.listed(g, state.Key{Name: "a"}, "1")
	c.changedWhileListed(g, state.Key{Name: "a"}, "2")
	c.listed(g, state.Key{Name: "b"}, "1")
	if _, n := c.end(g, "", nil); n != 2 {
		t.Fatalf("first list counted %d objects, want 2", n)
	}
	// In a relist the change still moves the object's version.
	g = c.begin()
	c.listed(g, state.Key{Name: "a"}, "3")
	c.changedWhileListed(g, state.Key{Name: "a"}, "4")
	if relisted, n := c.end(g, "", func() *gap { return &gap{} }); !relisted || n != 1 {
		t.Fatalf("relist: %v with %d objects, want one", relisted, n)
	}
	if c.recoveredBy(state.Key{Name: "a"}, "4") == nil {
		t.Fatal("the relist did not take the changed version")
	}
}

// The count of a first list is what the completed cycle listed: a paged
// list whose continue token expired and restarted counts only the
// restart; a continued page of a cycle not seen starting counts from
// there; a superseded cycle's end reports 0; deletions in a stream never
// make it negative; a stream's end taken back (undo) and streamed again
// counts the new stream only; and once the first list completed, every
// later cycle is a relist (which reserves nothing).
func TestListCyclesCountEdgeCases(t *testing.T) {
	noGap := func() *gap { return &gap{} }
	t.Run("expired continue token", func(t *testing.T) {
		var c listCycles
		if r, n := c.page(metav1.ListOptions{}, listPage("tok", "a", "b", "c"), cmKeyOf, noGap); r || n != 0 {
			t.Fatalf("first page: %v %d", r, n)
		}
		// The token expired: the pager lists again from the start.
		r, n := c.page(metav1.ListOptions{}, listPage("", "a", "d"), cmKeyOf, noGap)
		if r || n != 2 {
			t.Fatalf("restarted list: relisted %v, n %d; want false, 2", r, n)
		}
		if r, n := c.page(metav1.ListOptions{}, listPage("", "a"), cmKeyOf, noGap); !r || n != 1 {
			t.Fatalf("next list: relisted %v, n %d; want a relist of 1", r, n)
		}
	})
	t.Run("continued page of an unseen start", func(t *testing.T) {
		var c listCycles
		if r, n := c.page(metav1.ListOptions{Continue: "tok"}, listPage("", "x", "y"), cmKeyOf, noGap); r || n != 2 {
			t.Fatalf("relisted %v, n %d; want false, 2", r, n)
		}
	})
	t.Run("superseded cycle", func(t *testing.T) {
		var c listCycles
		g1 := c.begin()
		c.listed(g1, storeKey(1), "1")
		g2 := c.begin()
		c.listed(g1, storeKey(2), "1") // late, of the superseded cycle
		c.listed(g2, storeKey(3), "1")
		if r, n := c.end(g1, "", noGap); r || n != 0 {
			t.Fatalf("superseded end: %v %d; want false, 0", r, n)
		}
		if r, n := c.end(g2, "", noGap); r || n != 1 {
			t.Fatalf("current end: %v %d; want false, 1", r, n)
		}
	})
	t.Run("deletions exceed additions", func(t *testing.T) {
		var c listCycles
		g := c.begin()
		c.listed(g, storeKey(1), "")
		c.listed(g, storeKey(2), "")
		c.listed(g, storeKey(3), "1")
		if r, n := c.end(g, "", noGap); r || n != 0 {
			t.Fatalf("relisted %v, n %d; want false, 0", r, n)
		}
	})
	t.Run("stream undone then streamed again", func(t *testing.T) {
		var c listCycles
		g := c.begin()
		for i := 0; i < 5; i++ {
			c.listed(g, storeKey(i), "1")
		}
		r, n, undo := c.endStream(g, "", noGap)
		if r || n != 5 {
			t.Fatalf("stream end: %v %d", r, n)
		}
		undo()
		g2 := c.begin()
		c.listed(g2, storeKey(9), "1")
		c.listed(g2, storeKey(8), "1")
		if r, n, _ := c.endStream(g2, "", noGap); r || n != 2 {
			t.Fatalf("stream after undo: relisted %v, n %d; want false, 2", r, n)
		}
		g3 := c.begin()
		c.listed(g3, storeKey(9), "2")
		if r, n, _ := c.endStream(g3, "", noGap); !r || n != 1 {
			t.Fatalf("next stream: relisted %v, n %d; want a relist of 1", r, n)
		}
	})
}

// listPage is a List page of ConfigMaps ns/<names> holding cont as its
// continue token.
func listPage(cont string, names ...string) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetContinue(cont)
	for _, n := range names {
		u := cm("ns", n, nil)
		u.SetResourceVersion("1")
		l.Items = append(l.Items, *u)
	}
	return l
}

// cmKeyOf is the key of a ConfigMap.
func cmKeyOf(u *unstructured.Unstructured) state.Key {
	return state.Key{GVR: cmRes.GVR, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// List cycles fed by watch-list streams (and paged Lists as the
// fallback) under streams that break, expire, stall, carry other events
// than ADDED, or switch to paged Lists mid-life.

// The first stream breaks half-way (no bookmark), the next completes: the
// initial list is still no relist, and a later relist recovers exactly
// what changed.
func TestFirstListStreamBrokenThenCompleteIsNoRelist(t *testing.T) {
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
func TestStreamEndingWithGoneIsRetried(t *testing.T) {
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
func TestRelistStreamWithModifiedAndDeletedEvents(t *testing.T) {
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
func TestOddNamesRelisted(t *testing.T) {
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
func TestBookmarkWithoutAnnotationDoesNotEndTheCycle(t *testing.T) {
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
func TestStreamBrokenAfterBookmarkIsNoRelist(t *testing.T) {
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
func TestWatchListFallbackBetweenLists(t *testing.T) {
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
func TestLabelSelectorRelist(t *testing.T) {
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
func TestStallWatchdogDuringStream(t *testing.T) {
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
func TestRestoreWithStreamedFirstList(t *testing.T) {
	src := newWLSource(0)
	fill(src.fakeSource, 1200)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	for _, u := range src.objs[cmRes.GVR] {
		rec := recordOf(u)
		rec.Scope = cmScope("")
		st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	changeWhileDown(src.fakeSource)
	src.breakStreams = 1
	h := startWLHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, map[string]state.Store{"rec": st}, nil)
	h.waitReady()
	h.sinks["rec"].waitFor(t, "the changes while down", func(e []*event.Event) bool { return len(e) >= 4 })
	evs := quiesce(t, h, "rec")
	checkRecoveredAfterOneGap(t, evs, 2, 1)
	if d, _ := evs[0].Data.(*event.GapData); d == nil || d.Reason != gapRestart {
		t.Errorf("gap marker %+v, want a restart gap", evs[0].Data)
	}
	if h.ex.Relists() != 0 {
		t.Errorf("relists = %d, want 0", h.ex.Relists())
	}
}

// storeKey is the i-th of many keys, with '/' and '~' in their names.
func storeKey(i int) state.Key {
	return state.Key{GVR: cmRes.GVR, Namespace: fmt.Sprintf("ns/%d", i%7), Name: fmt.Sprintf("n~%d", i)}
}

// The version a completed cycle listed at is the cycle's own (its last
// page's, or its end bookmark's), kept before the reflector replaces its
// store: a deletion a relist shows is handled on the informer's goroutine,
// possibly before the reflector records the list's version, and a warm
// standby catching up reads this one. A continued page's version, a
// superseded cycle's end and a stream end taken back do not count.
func TestListCycleKeepsTheVersionItListedAt(t *testing.T) {
	var c listCycles
	noGap := func() *gap { return &gap{} }
	page := func(cont, next, rv string) {
		l := &unstructured.UnstructuredList{}
		l.SetResourceVersion(rv)
		l.SetContinue(next)
		c.page(metav1.ListOptions{Continue: cont}, l, func(u *unstructured.Unstructured) state.Key { return state.Key{} }, noGap)
	}
	page("", "p2", "100")
	if got := c.lastListedRV(); got != "" {
		t.Fatalf("after a first page of two: %q, want none", got)
	}
	page("p2", "", "100")
	if got := c.lastListedRV(); got != "100" {
		t.Fatalf("after the list: %q, want 100", got)
	}
	old := c.begin()
	cur := c.begin()
	c.end(old, "150", noGap)
	if got := c.lastListedRV(); got != "100" {
		t.Fatalf("a superseded cycle's end counted: %q", got)
	}
	_, _, undo := c.endStream(cur, "200", noGap)
	if got := c.lastListedRV(); got != "200" {
		t.Fatalf("after a stream's end bookmark: %q, want 200", got)
	}
	undo()
	if got := c.lastListedRV(); got != "100" {
		t.Fatalf("a stream end taken back still counts: %q, want 100", got)
	}
}
