package exporter

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/internal/golden"
)

// TestPendingSetAsGolden: random notes, snapshots, failures (with and
// without a prior note) and finishes (with current and stale snapshots)
// over keys that differ only by group, version, resource, namespace or
// name (with '/', '~', empty parts, a name that reads like a namespaced
// key), each operation reaching the set through an item made as the code
// makes it: enqueue's keyItem(k), the again path's keyItem(it.key()), or
// a copy handed back by the workqueue. What each operation gives, the
// number of records and whether the key has one after it, are compared
// with testdata/pending.golden, which holds what a set keyed by Key
// gives: records by item must behave exactly as records by Key.
func TestPendingSetAsGolden(t *testing.T) {
	var keys []state.Key
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Version: "v2", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "configmaps"},
		{Group: "example.com", Version: "v1", Resource: "configmaps"},
		{Group: "example.com", Version: "v1", Resource: "configmap"},
		{},
	} {
		for _, nn := range [][2]string{{"", "x"}, {"a", "x"}, {"a", "a/x"}, {"a/a", "x"}, {"~", "~0"}, {"a", ""}, {"", "a/x"}} {
			keys = append(keys, state.Key{GVR: gvr, Namespace: nn[0], Name: nn[1]})
		}
	}
	q := workqueue.NewTyped[item]()
	defer q.ShutDown()
	itemOf := func(rng *rand.Rand, k state.Key) item {
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
	recs := []*state.Record{nil, {UID: "u1"}, {UID: "u2"}}
	gapName := func(g *gap) string {
		if g == nil {
			return "nil"
		}
		return g.ev.ID
	}
	recName := func(r *state.Record) string {
		if r == nil {
			return "nil"
		}
		return r.UID
	}
	noticed := func(at time.Time) string {
		if at.IsZero() {
			return "zero"
		}
		return "set"
	}
	pend := func(p pending) string {
		return fmt.Sprintf("{gen=%d recovered=%s attempted=%s noticed=%s}", p.gen, gapName(p.recovered), recName(p.attempted), noticed(p.noticed))
	}
	keyIndex := map[state.Key]int{}
	legend := []string{"pendingSet operations (TestPendingSetAsGolden; go test -run TestPendingSetAsGolden -update rewrites it).", "Keys:"}
	for i, k := range keys {
		keyIndex[k] = i
		legend = append(legend, fmt.Sprintf("  k%d = %q %q %q ns %q name %q", i, k.GVR.Group, k.GVR.Version, k.GVR.Resource, k.Namespace, k.Name))
	}
	g := golden.New(strings.Join(legend, "\n"), 300, 1, 1000)
	g.StartSection("operations")
	rng := rand.New(rand.NewPCG(8, 3))
	p := newPendingSet()
	snaps := map[state.Key]pending{} // the last snapshot of each key, as a worker holds it
	now := time.Unix(1, 0)
	for op := 0; op < 50000; op++ {
		k := keys[rng.IntN(len(keys))]
		it := itemOf(rng, k)
		var line string
		switch rng.IntN(5) {
		case 0, 1:
			gp := gaps[rng.IntN(len(gaps))]
			now = now.Add(time.Second)
			p.note(it, gp, now)
			line = fmt.Sprintf("note k%d gap=%s", keyIndex[k], gapName(gp))
		case 2:
			got := p.snapshot(it)
			snaps[k] = got
			line = fmt.Sprintf("snapshot k%d = %s", keyIndex[k], pend(got))
		case 3:
			a := recs[rng.IntN(len(recs))]
			p.failed(it, a)
			line = fmt.Sprintf("failed k%d attempted=%s", keyIndex[k], recName(a))
		case 4:
			s := snaps[k]
			line = fmt.Sprintf("finish k%d with %s = noticed %s", keyIndex[k], pend(s), noticed(first(p.finish(it, s))))
		}
		g.Add(fmt.Sprintf("%d %s; len=%d has=%v\n", op, line, p.len(), p.has(itemOf(rng, k))))
	}
	g.StartSection("the end")
	for _, k := range keys {
		g.Add(fmt.Sprintf("snapshot k%d = %s\n", keyIndex[k], pend(p.snapshot(keyItem(k)))))
	}
	g.Check(t, "pending")
}

// A worker that finishes a key keeps what a handler noted meanwhile.
func TestPendingKeepsWhatWasNotedDuringSend(t *testing.T) {
	p := newPendingSet()
	k := keyItem(state.Key{Name: "x"})
	g1 := &gap{ev: &event.Event{ID: "g1"}}
	p.note(k, g1, time.Now())
	snap := p.snapshot(k)
	g2 := &gap{ev: &event.Event{ID: "g2"}}
	p.note(k, g2, time.Now()) // a relist while the worker sends
	p.finish(k, snap)
	if got := p.snapshot(k); got.recovered != g2 {
		t.Fatalf("recovered = %v, want the later gap kept", got.recovered)
	}
	snap = p.snapshot(k)
	p.finish(k, snap)
	if p.len() != 0 {
		t.Fatalf("%d records left after the key finished", p.len())
	}
	// A failure keeps the record with the attempted state.
	p.note(k, nil, time.Now())
	p.failed(k, &state.Record{UID: "b"})
	if got := p.snapshot(k); got.attempted == nil || got.attempted.UID != "b" {
		t.Fatalf("attempted = %+v", got.attempted)
	}
}

// During an outage with churn (objects created and deleted under new
// names), the per-key state drains to nothing once the sink recovers.
func TestPendingStateDrainsAfterOutage(t *testing.T) {
	src := newFakeSource(0)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	var mu sync.Mutex
	down := true
	h.sinks["rec"].fail = func(int, []*event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("sink down")
		}
		return nil
	}
	h.waitReady()
	for i := 0; i < 200; i++ {
		src.apply(cmRes.GVR, cm("a", fmt.Sprintf("churn-%d", i), nil), false)
		if i%2 == 0 {
			src.remove(cmRes.GVR, "a", fmt.Sprintf("churn-%d", i), false)
		}
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	h.sinks["rec"].waitFor(t, "100 surviving objects", func(e []*event.Event) bool {
		alive := map[string]bool{}
		for _, ev := range e {
			switch ev.Type {
			case event.Added.Type():
				alive[ev.Name] = true
			case event.Deleted.Type():
				delete(alive, ev.Name)
			}
		}
		return len(alive) == 100
	})
	r := h.ex.runners[0]
	deadline := time.Now().Add(40 * time.Second)
	for (r.pending.len() > 0 || r.queue.Len() > 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := r.pending.len(); n != 0 {
		t.Errorf("%d per-key records left after the backlog drained", n)
	}
}

// first is the first of two results.
func first[A, B any](a A, _ B) A { return a }
