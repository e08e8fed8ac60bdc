package exporter

import (
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// A restored checkpoint holds one object under four resources that differ
// only by version or by group (same namespace and name). While kubefeed
// was down two were deleted and one changed. Each restored key's record
// carries its own gap mark, through a retryable failure of its first send:
// every event sent is recovered and after its scope's gap marker, nothing
// is sent for the unchanged one, no pending record is left, and the
// checkpoint ends with exactly the two remaining objects.
//
// The widgets at v1 and at v2 make two scopes of one name
// ("widgets.restore.example": scope names carry no version), and so their
// records one Scope. Whether the changed v1 widget is sent recovered must
// not depend on which of the two scopes lists first.
func TestRestoredKeysDifferingOnlyByVersionOrGroupAreEachRecovered(t *testing.T) {
	res := func(group, version, resource, kind string) Resource {
		return Resource{GVR: schema.GroupVersionResource{Group: group, Version: version, Resource: resource},
			GVK: schema.GroupVersionKind{Group: group, Version: version, Kind: kind}, Namespaced: true}
	}
	rs := map[string]Resource{
		"configmaps":                 cmRes,
		"configmaps.restore.example": res("restore.example", "v1", "configmaps", "ConfigMap"),
		"widgets.restore.example":    res("restore.example", "v1", "widgets", "Widget"),
		"widgets.v2.restore.example": res("restore.example", "v2", "widgets", "Widget"),
	}
	resolver := &fakeResolver{known: rs, missing: map[string]bool{}}
	src := newFakeSource(0)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	var watch []config.Watch
	keyOf := map[string]Key{}
	for name, r := range rs {
		watch = append(watch, config.Watch{Resource: name})
		u := cm("a", "x", map[string]any{"v": "1"})
		u.SetAPIVersion(r.APIVersion())
		u.SetKind(r.GVK.Kind)
		u = src.apply(r.GVR, u, true)
		rec := recordOf(u)
		rec.Scope = scopeID{GVR: r.GVR}.String()
		k := Key{GVR: r.GVR, Namespace: "a", Name: "x"}
		st.Put(k, rec)
		keyOf[name] = k
	}
	// While down: two deleted, one changed, one unchanged.
	src.remove(cmRes.GVR, "a", "x", true)
	src.remove(rs["widgets.v2.restore.example"].GVR, "a", "x", true)
	changed := cm("a", "x", map[string]any{"v": "2"})
	changed.SetAPIVersion(rs["widgets.restore.example"].APIVersion())
	changed.SetKind("Widget")
	src.apply(rs["widgets.restore.example"].GVR, changed, true)

	var mu sync.Mutex
	failedOnce := map[string]bool{}
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if e.Type == event.TypeGap {
				continue
			}
			id := e.APIVersion + " " + e.Resource + " " + e.Type
			if !failedOnce[id] {
				failedOnce[id] = true
				return errors.New("unavailable")
			}
		}
		return nil
	}}
	h := startHarness(t, newConfig(watch), harnessOpts{src: src, resolver: resolver, stores: map[string]Store{"rec": st}, sink: sink})
	h.waitReady()
	evs := sink.waitFor(t, "three recovered changes", func(evs []*event.Event) bool {
		return count(evs, event.Deleted.Type()) == 2 && count(evs, event.Modified.Type()) == 1
	})
	quiesce(t, h, "rec")
	if r := h.ex.runners[0].stats().Retries; r != 3 {
		t.Errorf("%d retries, want 3 (each change's first send failed)", r)
	}
	evs = sink.got()
	gapSeen := map[string]bool{}
	for _, e := range evs {
		if e.Type == event.TypeGap {
			gapSeen[e.Data.(*event.GapData).Scope] = true
			continue
		}
		d := e.Data.(*event.ChangeData)
		if !d.Recovered {
			t.Errorf("%s %s %s not recovered", e.Type, e.APIVersion, e.Resource)
		}
		gv, err := schema.ParseGroupVersion(e.APIVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !gapSeen[scopeID{GVR: gv.WithResource(e.Resource)}.String()] {
			t.Errorf("%s %s %s before its scope's gap marker:%s", e.Type, e.APIVersion, e.Resource, summary(evs))
		}
	}
	if n := count(evs, event.Added.Type()); n != 0 || len(evs)-len(gapSeen) != 3 {
		t.Fatalf("events:%s, want two deletions and one modification after their gap markers", summary(evs))
	}
	for name, k := range keyOf {
		_, ok := st.Get(k)
		want := name == "configmaps.restore.example" || name == "widgets.restore.example"
		if ok != want {
			t.Errorf("record of %s (%v): %v, want %v", name, k.GVR, ok, want)
		}
	}
	if rec, _ := st.Get(keyOf["widgets.restore.example"]); rec.Object == nil || rec.Object.Object["data"].(map[string]any)["v"] != "2" {
		t.Errorf("record of the changed widget: %+v", rec)
	}
}

// Parked records of a scope name shared by two versions of a resource
// (widgets at v1 and at v2, resolved one after the other, both late) go to
// both scopes: each compares its list with the checkpoint, so a deletion
// made while kubefeed was down is found for either version, recovered and
// after its gap marker.
func TestParkedRecordsGoToEveryScopeOfTheirName(t *testing.T) {
	mk := func(version string) Resource {
		return Resource{GVR: schema.GroupVersionResource{Group: "park.example", Version: version, Resource: "widgets"},
			GVK: schema.GroupVersionKind{Group: "park.example", Version: version, Kind: "Widget"}, Namespaced: true}
	}
	v1, v2 := mk("v1"), mk("v2")
	resolver := &fakeResolver{known: map[string]Resource{"widgets.park.example": v1, "widgets.v2.park.example": v2},
		missing: map[string]bool{"widgets.park.example": true, "widgets.v2.park.example": true}}
	src := newFakeSource(0)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	for _, r := range []Resource{v1, v2} {
		u := cm("a", "gone-"+r.GVR.Version, nil)
		u.SetAPIVersion(r.APIVersion())
		u.SetKind("Widget")
		u.SetUID(typesUID("uid-" + r.GVR.Version))
		u.SetResourceVersion("7")
		rec := recordOf(u)
		rec.Scope = scopeID{GVR: r.GVR}.String()
		st.Put(Key{GVR: r.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "widgets.park.example"}, {Resource: "widgets.v2.park.example"}}),
		harnessOpts{src: src, resolver: resolver, stores: map[string]Store{"rec": st}})
	resolver.waitMissed(t, 3)
	resolver.appear("widgets.park.example")
	h.sinks["rec"].waitFor(t, "the deletion of the v1 widget", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	resolver.appear("widgets.v2.park.example")
	evs := h.sinks["rec"].waitFor(t, "the deletion of the v2 widget", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 2 })
	gaps := 0
	for _, e := range evs {
		if e.Type == event.TypeGap {
			gaps++
			continue
		}
		if !e.Data.(*event.ChangeData).Recovered || gaps == 0 {
			t.Errorf("%s %s: recovered=%v after %d gap markers, want recovered after its scope's gap", e.Type, e.Name, e.Data.(*event.ChangeData).Recovered, gaps)
		}
	}
}
