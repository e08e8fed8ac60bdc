package exporter

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
)

func TestObservationsFirstObservationStands(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	it := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x/~y"})
	t0 := time.Unix(100, 0)
	if got := o.observe(it, "u", "5", false, t0); !got.Equal(t0) {
		t.Fatalf("first observation: %s, want %s", got, t0)
	}
	// Later notifications of the same version (another scope's informer,
	// a worker) keep the first time.
	if got := o.observe(it, "u", "5", false, t0.Add(time.Second)); !got.Equal(t0) {
		t.Errorf("a later observation moved the time to %s", got)
	}
	// A live observation with an earlier clock reading (taken before, but
	// noted after) does not move it: a sink may have sent it.
	if got := o.observe(it, "u", "5", false, t0.Add(-time.Second)); !got.Equal(t0) {
		t.Errorf("an earlier live observation moved the time to %s", got)
	}
	// A restored record's time (a previous run sent it) replaces it.
	early := t0.Add(-time.Minute)
	o.restored(it, "u", "5", false, early)
	if got := o.observe(it, "u", "5", false, now); !got.Equal(early) {
		t.Errorf("a restored earlier time did not stand: %s", got)
	}
	// The deletion of a version, another uid and another version are
	// observed apart.
	for _, tc := range []struct {
		uid, rv string
		del     bool
	}{{"u", "5", true}, {"v", "5", false}, {"u", "6", false}} {
		at := t0.Add(time.Hour)
		if got := o.observe(it, tc.uid, tc.rv, tc.del, at); !got.Equal(at) {
			t.Errorf("%+v: %s, want its own time %s", tc, got, at)
		}
	}
	// An observer of the key asks with the clock.
	if got := o.forKey(it).At("u", "7", false); !got.Equal(now) {
		t.Errorf("observer: %s, want now %s", got, now)
	}
	if got := o.forKey(it).At("u", "7", false); !got.Equal(now) {
		t.Errorf("observer again: %s, want %s", got, now)
	}
	// Keys apart, even when their names differ only where '/' falls.
	other := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a/x", Name: "~y"})
	if got := o.observe(other, "u", "5", false, now); !got.Equal(now) {
		t.Errorf("another key shares an observation: %s", got)
	}
}

func TestObservationsKeepTheLatestVersionsOfAKey(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	it := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
	for i := 0; i < 3*observationsPerKey; i++ {
		o.observe(it, "u", time.Unix(int64(i), 0).Format("150405"), false, time.Unix(int64(i), 0))
	}
	s := o.shard(it)
	if n := len(s.m[it]); n != observationsPerKey {
		t.Fatalf("%d observations kept for one key, want %d", n, observationsPerKey)
	}
	last := 3*observationsPerKey - 1
	if got := o.observe(it, "u", time.Unix(int64(last), 0).Format("150405"), false, now); !got.Equal(time.Unix(int64(last), 0)) {
		t.Errorf("the latest version lost its time: %s", got)
	}
}

func TestObservationsPruneOnlyWhatNoSinkNeeds(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	pendingKey := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "pending"})
	doneKey := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "done"})
	youngKey := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "young"})
	o.observe(pendingKey, "u1", "1", false, now)
	o.observe(doneKey, "u2", "1", false, now)
	now = now.Add(time.Minute)
	o.observe(youngKey, "u3", "1", false, now)
	o.prune(func(it item) bool { return it == pendingKey }, 5*time.Second)
	if o.len() != 2 {
		t.Fatalf("%d keys after prune, want 2 (pending and young)", o.len())
	}
	if _, ok := o.shard(doneKey).m[doneKey]; ok {
		t.Error("a key no sink has pending, observed a minute ago, was kept")
	}
	if _, ok := o.shard(youngKey).m[youngKey]; !ok {
		t.Error("a key observed just now (about to be queued) was pruned")
	}
}

// Handlers' observations, observers' questions and pruning, run
// concurrently (under -race), keep what a sink has pending and drop the
// rest.
func TestObservationsConcurrentObservePruneKeepPendingKeys(t *testing.T) {
	observationsConcurrently(t, false)
}

// observationsConcurrently runs handlers' observations and observers'
// questions on 16 keys (8 pending) against pruning; with agree, every
// time returned for a pending key's version must be the first one
// returned for it.
func observationsConcurrently(t *testing.T, agree bool) {
	var clock atomic.Int64
	clock.Store(time.Unix(1000, 0).UnixNano())
	o := newObservations(func() time.Time { return time.Unix(0, clock.Add(int64(time.Millisecond))) })
	keys := make([]item, 16)
	for i := range keys {
		keys[i] = keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "k" + strconv.Itoa(i)})
	}
	pending := func(it item) bool { return it.name < "k8" } // k0..k7 and k1x
	var mu sync.Mutex
	first := map[string]time.Time{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				it := keys[(w+i)%len(keys)]
				rv := strconv.Itoa(i % observationsPerKey)
				var at time.Time
				if i%2 == 0 {
					at = o.observe(it, "u", rv, false, time.Unix(0, clock.Add(int64(time.Millisecond))))
				} else {
					at = o.forKey(it).At("u", rv, false)
				}
				if !agree || !pending(it) {
					continue
				}
				id := it.name + "/" + rv
				mu.Lock()
				if f, ok := first[id]; !ok {
					first[id] = at
				} else if !f.Equal(at) {
					t.Errorf("%s: %s, first %s", id, at, f)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			o.prune(pending, 0)
		}
	}()
	wg.Wait()
	clock.Add(int64(time.Hour))
	o.prune(pending, time.Second)
	for _, it := range keys {
		s := o.shard(it)
		s.mu.Lock()
		_, kept := s.m[it]
		s.mu.Unlock()
		if kept != pending(it) {
			t.Errorf("%s kept=%v, pending=%v", it.name, kept, pending(it))
		}
	}
}

// A time handed to a sink stands. A worker that sees a
// version in the cache before its handler ran renders it with its clock
// (t1); the handler, whose clock reading (t0) came just before the
// worker's but which took the shard's lock after it, must not move the
// time another sink renders next.
func TestObservationsTimeHandedToASinkStands(t *testing.T) {
	t0 := time.Unix(100, 0)
	t1 := t0.Add(36 * time.Nanosecond)
	o := newObservations(func() time.Time { return t1 })
	it := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
	// Sink one's worker renders the version, then its handler notes it,
	// then sink two renders it.
	sent := o.forKey(it).At("u", "5", false)
	o.observe(it, "u", "5", false, t0)
	if again := o.forKey(it).At("u", "5", false); !again.Equal(sent) {
		t.Errorf("sink one sent the version at %s, sink two at %s", sent.Format(time.RFC3339Nano), again.Format(time.RFC3339Nano))
	}
}

// Observers of keys that some sink has pending, asked concurrently with
// handlers' observations and pruning, all see the first time returned for
// each version.
func TestObservationsConcurrentObserversAgree(t *testing.T) {
	observationsConcurrently(t, true)
}

// A restored time waits for its key past the usual age (a scope that lists
// late), and is pruned as usual once the key was seen live.
func TestObservationsRestoredTimeWaitsForItsKey(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	late := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "late"})
	seen := keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "seen"})
	o.restored(late, "u1", "1", false, time.Unix(1, 0))
	o.restored(seen, "u2", "1", true, time.Unix(2, 0))
	now = now.Add(time.Minute)
	o.observe(seen, "u2", "1", true, now) // the worker infers the deletion
	now = now.Add(time.Minute)
	none := func(item) bool { return false }
	o.prune(none, 5*time.Second)
	if _, ok := o.shard(late).m[late]; !ok {
		t.Error("a restored time whose key was not seen yet was pruned")
	}
	if _, ok := o.shard(seen).m[seen]; ok {
		t.Error("a restored time whose key was seen and finished was kept")
	}
	now = now.Add(restoredFor)
	o.prune(none, 5*time.Second)
	if o.len() != 0 {
		t.Errorf("%d keys kept past restoredFor", o.len())
	}
}
