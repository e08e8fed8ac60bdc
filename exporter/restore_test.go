package exporter

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
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
	res := func(group, version, res, kind string) resource.Resource {
		return resource.Resource{GVR: schema.GroupVersionResource{Group: group, Version: version, Resource: res},
			GVK: schema.GroupVersionKind{Group: group, Version: version, Kind: kind}, Namespaced: true}
	}
	rs := map[string]resource.Resource{
		"configmaps":                 cmRes,
		"configmaps.restore.example": res("restore.example", "v1", "configmaps", "ConfigMap"),
		"widgets.restore.example":    res("restore.example", "v1", "widgets", "Widget"),
		"widgets.v2.restore.example": res("restore.example", "v2", "widgets", "Widget"),
	}
	resolver := &fakeResolver{known: rs, missing: map[string]bool{}}
	src := newFakeSource(0)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	var watch []config.Watch
	keyOf := map[string]state.Key{}
	for name, r := range rs {
		watch = append(watch, config.Watch{Resource: name})
		u := cm("a", "x", map[string]any{"v": "1"})
		u.SetAPIVersion(r.APIVersion())
		u.SetKind(r.GVK.Kind)
		u = src.apply(r.GVR, u, true)
		rec := recordOf(u)
		rec.Scope = scopeID{GVR: r.GVR}.String()
		k := state.Key{GVR: r.GVR, Namespace: "a", Name: "x"}
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
	h := startHarness(t, newConfig(watch), harnessOpts{src: src, resolver: resolver, stores: map[string]state.Store{"rec": st}, sink: sink})
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
	mk := func(version string) resource.Resource {
		return resource.Resource{GVR: schema.GroupVersionResource{Group: "park.example", Version: version, Resource: "widgets"},
			GVK: schema.GroupVersionKind{Group: "park.example", Version: version, Kind: "Widget"}, Namespaced: true}
	}
	v1, v2 := mk("v1"), mk("v2")
	resolver := &fakeResolver{known: map[string]resource.Resource{"widgets.park.example": v1, "widgets.v2.park.example": v2},
		missing: map[string]bool{"widgets.park.example": true, "widgets.v2.park.example": true}}
	src := newFakeSource(0)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	for _, r := range []resource.Resource{v1, v2} {
		u := cm("a", "gone-"+r.GVR.Version, nil)
		u.SetAPIVersion(r.APIVersion())
		u.SetKind("Widget")
		u.SetUID(types.UID("uid-" + r.GVR.Version))
		u.SetResourceVersion("7")
		rec := recordOf(u)
		rec.Scope = scopeID{GVR: r.GVR}.String()
		st.Put(state.Key{GVR: r.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "widgets.park.example"}, {Resource: "widgets.v2.park.example"}}),
		harnessOpts{src: src, resolver: resolver, stores: map[string]state.Store{"rec": st}})
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

const pwSecretValue = "c2VjcmV0LWh1bnRlcjI=" // base64 of "secret-hunter2"

// pwSecret is the Secret a/pw holding pwSecretValue, with labels.
func pwSecret(labels map[string]any) *unstructured.Unstructured {
	md := map[string]any{"namespace": "a", "name": "pw"}
	if labels != nil {
		md["labels"] = labels
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": md, "data": map[string]any{"password": pwSecretValue}}}
}

// restoredSecret seeds st as checkpoint.decodeRecord restores a record of
// format 2: the state as the rule redacted it, no Rule, no Redact.
func restoredSecret(t *testing.T, src *fakeSource) (*restoredStore, state.Key) {
	t.Helper()
	u := src.apply(secretRes.GVR, pwSecret(nil), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Object = &unstructured.Unstructured{Object: filters.NewRedactor(filters.SecretPaths, nil).Object(u.Object)}
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	rec.AtRest = true // as exporter/checkpoint restores it
	k := state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "pw"}
	st.Put(k, rec)
	st.Put(sentinelKey(scopeID{GVR: secretRes.GVR}), state.Record{Scope: rec.Scope})
	return st, k
}

// After a restart, an object that did not change while kubefeed was down
// emits nothing; its next live change, later, is a live change: not
// recovered, and no gap marker precedes it.
func TestRestoredUnchangedObjectIsLiveLater(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(cmRes.GVR, cm("a", "same", map[string]any{"v": "1"}), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Scope = cmScope("")
	st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "same"}, rec)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	h.waitReady()
	// Let the restored keys be compared (they emit nothing), then change.
	deadline := time.Now().Add(10 * time.Second)
	for h.ex.runners[0].pending.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if evs := h.sinks["rec"].got(); len(evs) != 0 {
		t.Fatalf("unchanged restored object emitted:%s", summary(evs))
	}
	src.apply(cmRes.GVR, cm("a", "same", map[string]any{"v": "2"}), false)
	evs := h.sinks["rec"].waitFor(t, "the live change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	if len(evs) != 1 {
		t.Fatalf("got%s, want only the modified event", summary(evs))
	}
	if evs[0].Data.(*event.ChangeData).Recovered {
		t.Error("a live change hours after the restart is marked recovered")
	}
}

// A checkpoint's records of a resource not resolved at start (a CRD
// installed later) are kept: a deletion made while kubefeed was down is
// found once the resource appears.
func TestRestoreWaitsForLateResource(t *testing.T) {
	src := newFakeSource(0)
	res := newResolver("widgets.example.com")
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	gone := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"namespace": "a", "name": "w1", "uid": "u-w1", "resourceVersion": "7"}}}
	rec := recordOf(gone)
	rec.Scope = scopeID{GVR: widgetRes.GVR}.String()
	st.Put(state.Key{GVR: widgetRes.GVR, Namespace: "a", Name: "w1"}, rec)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "widgets.example.com"}, {Resource: "configmaps"}}), harnessOpts{src: src, resolver: res, stores: map[string]state.Store{"rec": st}})
	res.waitMissed(t, 3) // several resolve attempts
	res.appear("widgets.example.com")
	evs := h.sinks["rec"].waitFor(t, "the deletion of w1", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	if evs[0].Type != event.TypeGap || evs[1].Name != "w1" || !evs[1].Data.(*event.ChangeData).Recovered {
		t.Fatalf("want a restart gap then the recovered deletion of w1, got%s", summary(evs))
	}
}

// Two rules of one late resource (a CRD installed after start) share a
// scope but feed different sinks: resolveLoop resolves and starts the
// scope for the first rule, and the second joins it. The parked
// checkpoint records of both sinks are unparked with the scope (none is
// forgotten by forgetParked), so a deletion made while kubefeed was down
// reaches a and b.
func TestLateResourceSecondRuleKeepsParkedRecords(t *testing.T) {
	src := newFakeSource(0)
	res := newResolver("widgets.example.com")
	stA := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	stB := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	gone := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"namespace": "a", "name": "w1", "uid": "u-w1", "resourceVersion": "7"}}}
	rec := recordOf(gone)
	rec.Scope = scopeID{GVR: widgetRes.GVR}.String()
	k := state.Key{GVR: widgetRes.GVR, Namespace: "a", Name: "w1"}
	stA.Put(k, rec)
	stB.Put(k, rec)
	cfg := newConfig([]config.Watch{
		{Resource: "widgets.example.com", Sinks: []string{"a"}},
		{Resource: "widgets.example.com", Sinks: []string{"b"}},
	}, "a", "b")
	h := startHarness(t, cfg, harnessOpts{src: src, resolver: res, stores: map[string]state.Store{"a": stA, "b": stB}})
	time.Sleep(100 * time.Millisecond) // several resolve attempts
	res.appear("widgets.example.com")
	h.sinks["a"].waitFor(t, "the deletion of w1 at a", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	h.sinks["b"].waitFor(t, "the deletion of w1 at b", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
}

// An unknown scope's records are forgotten once every rule resolved: the
// objects left the configured scopes, which is not a deletion.
func TestRestoreForgetsScopesNoLongerConfigured(t *testing.T) {
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	st.Put(state.Key{GVR: deployRes.GVR, Namespace: "a", Name: "d"}, state.Record{UID: "u", ResourceVersion: "1", Scope: scopeID{GVR: deployRes.GVR}.String()})
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{stores: map[string]state.Store{"rec": st}})
	h.waitReady()
	if _, ok := st.Get(state.Key{GVR: deployRes.GVR, Namespace: "a", Name: "d"}); ok {
		t.Error("a record of a scope no longer configured was kept")
	}
	if evs := h.sinks["rec"].got(); len(evs) != 0 {
		t.Errorf("leaving the scope emitted:%s", summary(evs))
	}
}

// A checkpoint written by an older kubefeed names a scope that excludes
// namespaces with no field selector of its own with an empty first term
// ("--field-selector ,metadata.namespace!=…"). Its records belong to the
// same scope now: a deletion made while kubefeed was down is still sent.
func TestLegacyScopeNameOfExcludedNamespacesIsRestored(t *testing.T) {
	src := newFakeSource(0)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	gone := cm("a", "gone", nil)
	gone.SetUID("uid-gone")
	gone.SetResourceVersion("7")
	rec := recordOf(gone)
	rec.Scope = "configmaps --field-selector ,metadata.namespace!=kube-system"
	st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "gone"}, rec)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", ExcludeNamespaces: []string{"kube-system"}}}),
		harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the deletion of gone", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	if evs[0].Type != event.TypeGap || evs[1].Name != "gone" || !evs[1].Data.(*event.ChangeData).Recovered {
		t.Fatalf("want a restart gap then the recovered deletion of gone, got%s", summary(evs))
	}
}

// After a restart the restored base is the redacted state, and plan diffs
// it against the current object redacted likewise: a label added to a
// Secret while kubefeed was down arrives as a recovered modified event
// whose patch touches no /data path (nor does changedPaths name one),
// since the password did not change.
func TestRestoredSecretPatchHasNoSpuriousRedactedOps(t *testing.T) {
	src := newFakeSource(0)
	st, _ := restoredSecret(t, src)
	u := pwSecret(map[string]any{"tier": "db"})
	src.apply(secretRes.GVR, u, true) // changed while kubefeed was down
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the recovered label change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	d := evs[len(evs)-1].Data.(*event.ChangeData)
	for _, op := range d.Patch {
		if strings.HasPrefix(op.Path, "/data") {
			t.Errorf("patch of a label change touches %s %s (changedPaths %v)", op.Op, op.Path, d.ChangedPaths)
		}
	}
}

// A Secret whose value changed while kubefeed was down: the redacted base
// cannot show it, yet the consumer must learn the new version — a
// recovered modified event with an empty patch, and nothing in clear.
func TestRestoredSecretValueChangeStillEmits(t *testing.T) {
	src := newFakeSource(0)
	st, _ := restoredSecret(t, src)
	u := pwSecret(nil)
	u.Object["data"] = map[string]any{"password": "bmV3LXZhbHVl"}
	cur := src.apply(secretRes.GVR, u, true) // changed while kubefeed was down
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the recovered value change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	ev := evs[len(evs)-1]
	d := ev.Data.(*event.ChangeData)
	if ev.ResourceVersion != cur.GetResourceVersion() || !d.Recovered || len(d.Patch) != 0 {
		t.Fatalf("event rv %s recovered %v patch %v, want rv %s, recovered, empty patch", ev.ResourceVersion, d.Recovered, d.Patch, cur.GetResourceVersion())
	}
	b, _ := event.Marshal(ev)
	if strings.Contains(string(b), "bmV3LXZhbHVl") {
		t.Errorf("the new value is in the event: %s", b)
	}
}
