package exporter

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
)

// Audit of pending records keyed by queue item (commit 6fa300c).

// oldPendingSet8 is pendingSet before 6fa300c (by Key), a frozen copy: the
// reference of TestPendingByItemAsByKeyAudit8.
type oldPendingSet8 struct{ m map[Key]*pending }

func (p *oldPendingSet8) note(k Key, g *gap, now time.Time) {
	e := p.m[k]
	if e == nil {
		e = &pending{noticed: now}
		p.m[k] = e
	}
	if g != nil {
		e.recovered = g
	}
	e.gen++
}

func (p *oldPendingSet8) snapshot(k Key) pending {
	if e := p.m[k]; e != nil {
		return *e
	}
	return pending{}
}

func (p *oldPendingSet8) failed(k Key, attempted *Record) {
	e := p.m[k]
	if e == nil {
		e = &pending{noticed: time.Now()}
		p.m[k] = e
	}
	if attempted != nil {
		e.attempted = attempted
	}
}

func (p *oldPendingSet8) finish(k Key, snap pending) time.Time {
	e := p.m[k]
	if e == nil {
		return snap.noticed
	}
	noticed := e.noticed
	if e.gen == snap.gen {
		delete(p.m, k)
		return noticed
	}
	if e.recovered == snap.recovered {
		e.recovered = nil
	}
	if e.attempted == snap.attempted {
		e.attempted = nil
	}
	e.noticed = time.Now()
	return noticed
}

func samePending(a, b pending) bool {
	return a.gen == b.gen && a.recovered == b.recovered && a.attempted == b.attempted && a.noticed.IsZero() == b.noticed.IsZero()
}

// Random notes, snapshots, failures (with and without a prior note) and
// finishes (with current and stale snapshots) over keys that differ only
// by group, version, resource, namespace or name (with '/', '~', empty
// parts, a name that reads like a namespaced key), each operation
// reaching the set through an item made as the code makes it: enqueue's
// keyItem(k), the again path's keyItem(it.key()), or a copy handed back by
// the workqueue. The set behaves exactly as the previous one by Key.
func TestPendingByItemAsByKeyAudit8(t *testing.T) {
	var keys []Key
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Version: "v2", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "configmaps"},
		{Group: "audit8.example", Version: "v1", Resource: "configmaps"},
		{Group: "audit8.example", Version: "v1", Resource: "configmap"},
		{},
	} {
		for _, nn := range [][2]string{{"", "x"}, {"a", "x"}, {"a", "a/x"}, {"a/a", "x"}, {"~", "~0"}, {"a", ""}, {"", "a/x"}} {
			keys = append(keys, Key{GVR: gvr, Namespace: nn[0], Name: nn[1]})
		}
	}
	q := workqueue.NewTyped[item]()
	defer q.ShutDown()
	itemOf := func(rng *rand.Rand, k Key) item {
		switch rng.IntN(3) {
		case 0:
			return keyItem(k)
		case 1:
			return keyItem(keyItem(k).key())
		default:
			q.Add(keyItem(k))
			it, _ := q.Get()
			q.Done(it)
			return it
		}
	}
	gaps := []*gap{nil, {ev: &event.Event{ID: "g1"}}, {ev: &event.Event{ID: "g2"}}}
	recs := []*Record{nil, {UID: "u1"}, {UID: "u2"}}
	rng := rand.New(rand.NewPCG(8, 3))
	p := newPendingSet()
	old := &oldPendingSet8{m: map[Key]*pending{}}
	snaps := map[Key]pending{} // the last snapshot of each key, as a worker holds it
	now := time.Unix(1, 0)
	for op := 0; op < 50000; op++ {
		k := keys[rng.IntN(len(keys))]
		it := itemOf(rng, k)
		switch rng.IntN(5) {
		case 0, 1:
			g := gaps[rng.IntN(len(gaps))]
			now = now.Add(time.Second)
			p.note(it, g, now)
			old.note(k, g, now)
		case 2:
			got, want := p.snapshot(it), old.snapshot(k)
			if !samePending(got, want) {
				t.Fatalf("op %d: snapshot(%v) = %+v, want %+v", op, k, got, want)
			}
			snaps[k] = got
		case 3:
			a := recs[rng.IntN(len(recs))]
			p.failed(it, a)
			old.failed(k, a)
		case 4:
			s := snaps[k]
			got, want := p.finish(it, s), old.finish(k, s)
			if got.IsZero() != want.IsZero() {
				t.Fatalf("op %d: finish(%v) noticed %v, want %v", op, k, got, want)
			}
		}
		if p.len() != len(old.m) {
			t.Fatalf("op %d: %d records, want %d", op, p.len(), len(old.m))
		}
		if _, ok := old.m[k]; p.has(itemOf(rng, k)) != ok {
			t.Fatalf("op %d: has(%v) = %v, want %v", op, k, !ok, ok)
		}
	}
	for _, k := range keys {
		if got, want := p.snapshot(keyItem(k)), old.snapshot(k); !samePending(got, want) {
			t.Fatalf("end: snapshot(%v) = %+v, want %+v", k, got, want)
		}
	}
}

// A restored checkpoint holds one object under four resources that differ
// only by version or by group (same namespace and name). While kubefeed
// was down two were deleted and one changed. Each restored key's record
// carries its own gap mark, through a retryable failure of its first send:
// every event sent is recovered and after its scope's gap marker, nothing
// is sent for the unchanged one, no pending record is left, and the
// checkpoint ends with exactly the two remaining objects.
func TestRestoredKeysDifferingByVersionOrGroupAudit8(t *testing.T) {
	res := func(group, version, resource, kind string) Resource {
		return Resource{GVR: schema.GroupVersionResource{Group: group, Version: version, Resource: resource},
			GVK: schema.GroupVersionKind{Group: group, Version: version, Kind: kind}, Namespaced: true}
	}
	rs := map[string]Resource{
		"configmaps":                cmRes,
		"configmaps.audit8.example": res("audit8.example", "v1", "configmaps", "ConfigMap"),
		"widgets.audit8.example":    res("audit8.example", "v1", "widgets", "Widget"),
		"widgets.v2.audit8.example": res("audit8.example", "v2", "widgets", "Widget"),
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
	src.remove(rs["widgets.v2.audit8.example"].GVR, "a", "x", true)
	changed := cm("a", "x", map[string]any{"v": "2"})
	changed.SetAPIVersion(rs["widgets.audit8.example"].APIVersion())
	changed.SetKind("Widget")
	src.apply(rs["widgets.audit8.example"].GVR, changed, true)

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
		want := name == "configmaps.audit8.example" || name == "widgets.audit8.example"
		if ok != want {
			t.Errorf("record of %s (%v): %v, want %v", name, k.GVR, ok, want)
		}
	}
	if rec, _ := st.Get(keyOf["widgets.audit8.example"]); rec.Object == nil || rec.Object.Object["data"].(map[string]any)["v"] != "2" {
		t.Errorf("record of the changed widget: %+v", rec)
	}
}
