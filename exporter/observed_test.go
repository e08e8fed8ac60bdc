package exporter

import (
	"testing"
	"time"
)

func TestObservationsFirstObservationStands(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	it := keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "x/~y"})
	t0 := time.Unix(100, 0)
	if got := o.observe(it, "u", "5", false, t0); !got.Equal(t0) {
		t.Fatalf("first observation: %s, want %s", got, t0)
	}
	// Later notifications of the same version (another scope's informer,
	// a worker) keep the first time.
	if got := o.observe(it, "u", "5", false, t0.Add(time.Second)); !got.Equal(t0) {
		t.Errorf("a later observation moved the time to %s", got)
	}
	// An earlier one (a restored record's) replaces it.
	early := t0.Add(-time.Minute)
	if got := o.observe(it, "u", "5", false, early); !got.Equal(early) {
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
	if got := o.forKey(it).at("u", "7", false); !got.Equal(now) {
		t.Errorf("observer: %s, want now %s", got, now)
	}
	if got := o.forKey(it).at("u", "7", false); !got.Equal(now) {
		t.Errorf("observer again: %s, want %s", got, now)
	}
	// Keys apart, even when their names differ only where '/' falls.
	other := keyItem(Key{GVR: cmRes.GVR, Namespace: "a/x", Name: "~y"})
	if got := o.observe(other, "u", "5", false, now); !got.Equal(now) {
		t.Errorf("another key shares an observation: %s", got)
	}
}

func TestObservationsKeepTheLatestVersionsOfAKey(t *testing.T) {
	now := time.Unix(1000, 0)
	o := newObservations(func() time.Time { return now })
	it := keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
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
	pendingKey := keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "pending"})
	doneKey := keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "done"})
	youngKey := keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "young"})
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
