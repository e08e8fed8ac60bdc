package exporter

import (
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
)

// A paged initial list (1,200 objects in pages of 500) is the initial
// list, not a relist: no gap marker, nothing recovered.
func TestPagedInitialListIsNotARelist(t *testing.T) {
	src := newFakeSource(500)
	for i := 0; i < 1200; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), true)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
	h.waitReady()
	evs := h.sinks["rec"].waitFor(t, "1200 added", func(e []*event.Event) bool { return count(e, event.Added.Type()) >= 1200 })
	if src.listCalls[cmRes.GVR] < 3 {
		t.Fatalf("the list was not paged: %d List calls", src.listCalls[cmRes.GVR])
	}
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
}

// A paged relist remembers every page: objects changed while the watch
// was down, on any page, arrive recovered after one gap marker; unchanged
// objects emit nothing.
func TestPagedRelistRecoversEveryPage(t *testing.T) {
	src := newFakeSource(500)
	for i := 0; i < 1200; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), true)
	}
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
	if len(evs) != 5 {
		t.Errorf("got %d events, want gap + 3 modified + 1 deleted:%s", len(evs), summary(evs))
	}
	if h.ex.Relists() != 1 {
		t.Errorf("relists = %d, want 1", h.ex.Relists())
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
