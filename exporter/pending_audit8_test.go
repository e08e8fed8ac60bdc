package exporter

import (
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/event"
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
