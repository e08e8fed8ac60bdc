package exporter

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// A warm standby whose watch relisted (410) after the old leader delivered
// a version of an object that was then deleted sees the deletion only as
// DeletedFinalStateUnknown, with the last version its own cache held, and
// no object of the scope carries a version as new as the record's: the
// relist itself (at a resourceVersion past the record's) is all the
// progress there is. Its cache is current, so the deletion is sent at
// once, not after catchUpTimeout (30s) of the whole scope waiting, its
// keys polled every 20ms.
func TestWarmStandbyCatchUpEndsWhenARelistShowsTheNewestRecordedObjectDeleted(t *testing.T) {
	src := newFakeSource(0)
	x1 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	y := src.apply(cmRes.GVR, cm("a", "y", nil), true)
	h, rec, _ := standbyBehindCheckpoint(t, src, []*unstructured.Unstructured{x1, y}, func() []*unstructured.Unstructured {
		// The old leader sees x at v2 and delivers it; x is deleted
		// next; the standby's watch saw neither.
		x2 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)
		src.remove(cmRes.GVR, "a", "x", true)
		return []*unstructured.Unstructured{x2}
	})
	// The standby's watch expires; its relist no longer finds x.
	src.expire(cmRes.GVR)
	xKey := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	waitUntil(t, "the relist to drop x from the cache", func() bool {
		return h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(xKey) == nil
	})
	leadNow(t, h, rec)
	// Well below catchUpTimeout (30s), which is what the scope waiting
	// would take; 5s was once not enough on a CI machine loaded so that
	// other packages' tests ran ten times slower than here.
	deadline := time.Now().Add(20 * time.Second)
	for count(rec.got(), event.Deleted.Type()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("20s after the Lead, x's deletion (seen by a completed relist) is not sent; the scope waits for a version no object of it will carry;%s", summary(rec.got()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// offsetClock is time.Now moved ahead by what the test adds.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *offsetClock) opts(o Options) Options  { o.Now = c.now; return o }
func standbyOptions(t *testing.T, src *fakeSource, st state.Store) Options {
	return Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}), Resolver: newResolver(), Stores: map[string]state.Store{"rec": st}, Standby: true,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client}
}

// A warm standby whose watch lags the checkpoint for longer than
// catchUpTimeout (a relist of a large resource on a loaded API server)
// still never sends a version older than the one the sink holds: the
// timeout must not turn per-object resourceVersion order off. Its keys go
// on waiting for their own versions.
func TestWarmStandbyNeverSendsAVersionOlderThanTheCheckpointsAfterTheCatchUpTimeout(t *testing.T) {
	src := newFakeSource(0)
	v1 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}
	put := func(u *unstructured.Unstructured) {
		r := recordOf(u)
		r.Scope = cmScope("")
		st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, r)
	}
	put(v1)
	st.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
	clk := &offsetClock{}
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, clk.opts(standbyOptions(t, src, st)))
	rec := h.sinks["rec"]
	waitWarm(t, h.ex)
	v2 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true) // the old leader's; not on the standby's watch yet
	put(v2)
	leadNow(t, h, rec)
	letItWork()
	clk.advance(catchUpTimeout + time.Second) // the watch is still behind
	time.Sleep(500 * time.Millisecond)
	for _, e := range rec.got() {
		if e.Name == "x" && e.ResourceVersion != v2.GetResourceVersion() {
			t.Errorf("after the catch-up timeout: sent %s of version %s; the sink had version %s;%s", e.Type, e.ResourceVersion, v2.GetResourceVersion(), summary(rec.got()))
		}
	}
	deliverLate(t, h, watch.Event{Type: watch.Modified, Object: v2})
}

// getCounter is a restored store that counts the Gets of object records
// (a worker reads its key's record once per look).
type getCounter struct {
	*restoredStore
	gets atomic.Int64
}

func (g *getCounter) Get(k state.Key) (state.Record, bool) {
	if !isSentinel(k) {
		g.gets.Add(1)
	}
	return g.restoredStore.Get(k)
}

// The keys of a scope that catches up wait for its watch without the
// sink's workers looking at each of them every 20ms: at 100k keys that is
// five million looks a second for up to 30s, both cores busy and the other
// scopes' keys behind them in the queue. Over one second of waiting, a key
// is looked at a few times (woken when the watch gets there, or backed
// off), not fifty.
func TestWarmStandbyKeysWaitingForTheWatchAreNotPolledEvery20ms(t *testing.T) {
	const n = 300
	src := newFakeSource(0)
	st := &getCounter{restoredStore: &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}}
	put := func(u *unstructured.Unstructured) {
		r := recordOf(u)
		r.Scope = cmScope("")
		st.restoredStore.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, r)
	}
	for i := range n {
		put(src.apply(cmRes.GVR, cm("a", fmt.Sprintf("o-%d", i), map[string]any{"v": "1"}), true))
	}
	put(src.apply(cmRes.GVR, cm("a", "z", map[string]any{"v": "1"}), true))
	st.restoredStore.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, standbyOptions(t, src, st))
	rec := h.sinks["rec"]
	waitWarm(t, h.ex)
	// Changes while standing by, on the standby's watch: n keys to send.
	for i := range n {
		src.apply(cmRes.GVR, cm("a", fmt.Sprintf("o-%d", i), map[string]any{"v": "2"}), false)
	}
	last := fmt.Sprintf("o-%d", n-1)
	waitUntil(t, "the standby to see the changes", func() bool {
		u := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: last})
		return u != nil && u.Object["data"].(map[string]any)["v"] == "2"
	})
	// The old leader delivered a newer change the standby's watch lags.
	z2 := src.apply(cmRes.GVR, cm("a", "z", map[string]any{"v": "2"}), true)
	put(z2)
	leadNow(t, h, rec)
	time.Sleep(100 * time.Millisecond)
	st.gets.Store(0)
	time.Sleep(time.Second)
	looks := st.gets.Load()
	deliverLate(t, h, watch.Event{Type: watch.Modified, Object: z2})
	if looks > 10*n {
		t.Errorf("%d keys waiting one second for the watch were looked at %d times (%.0f each), want at most %d", n+1, looks, float64(looks)/float64(n+1), 10*n)
	}
}
