package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/kubefeed/kubefeed/exporter/checkpoint"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// A shard store that no run flushed starts from the records of the layout
// flushed last (here the unsharded one, then 2 shards), for its own uids
// only, and reports that layout's flush as restored; the old stores are
// only read (their flush time stays). A store flushed after every other
// layout is left alone, and a bucket without an earlier layout is a first
// run.
func TestSeedShardStoresFromTheLayoutBefore(t *testing.T) {
	srv, ctx, open := seedBucket(t)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	key := func(i int) state.Key { return state.Key{GVR: gvr, Namespace: "ns", Name: fmt.Sprintf("cm-%d", i)} }
	uids := make([]string, 40) // random, as the API server makes them
	for i := range uids {
		uids[i] = string(uuid.NewUUID())
	}
	uid := func(i int) string { return uids[i] }

	// Nothing before: a first run.
	kv := open()
	st, err := kv.Store(ctx, "js.shard-0-of-3")
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]state.Store{"js": st}
	if err := seedShardStores(ctx, kv, shard.Of(0, 3), stores, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, restored := stores["js"].(state.Restorer).Restored(); restored {
		t.Error("a shard store seeded from an empty bucket reports restored")
	}
	_ = kv.Close() // writes m.js.shard-0-of-3 (no records)

	// The unsharded feed ran and wrote 40 records.
	kv = open()
	plain, err := kv.Store(ctx, "js")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		plain.Put(key(i), state.Record{UID: uid(i), ResourceVersion: fmt.Sprint(100 + i), Scope: "configmaps/ns"})
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	plainAt := restoredAt(t, srv.URL(), "js")

	check := func(sp *shard.Span, wantAt time.Time) map[string]state.Store {
		t.Helper()
		kv := open()
		defer func() { _ = kv.Close() }()
		st, err := kv.Store(ctx, shardStore("js", sp))
		if err != nil {
			t.Fatal(err)
		}
		stores := map[string]state.Store{"js": st}
		if err := seedShardStores(ctx, kv, sp, stores, zaptest.NewLogger(t)); err != nil {
			t.Fatal(err)
		}
		at, restored := stores["js"].(state.Restorer).Restored()
		if !restored || !at.Equal(wantAt) {
			t.Errorf("%s: restored %v %v, want %v", sp, at, restored, wantAt)
		}
		n := 0
		stores["js"].Range(func(k state.Key, r state.Record) bool {
			n++
			if !sp.Has(r.UID) {
				t.Errorf("%s: seeded with %s of another shard", sp, r.UID)
			}
			return true
		})
		for i := range 40 {
			if _, ok := stores["js"].Get(key(i)); ok != sp.Has(uid(i)) {
				t.Errorf("%s: record of %s seeded %v, in the shard %v", sp, uid(i), ok, sp.Has(uid(i)))
			}
		}
		if n == 0 {
			t.Errorf("%s: seeded with nothing", sp)
		}
		return stores
	}
	// Sharding turned on, 2 shards: each starts from the unsharded
	// records, and flushes them as its own.
	check(shard.Of(0, 2), plainAt)
	check(shard.Of(1, 2), plainAt)
	if at := restoredAt(t, srv.URL(), "js"); !at.Equal(plainAt) {
		t.Errorf("the unsharded store's flush time went from %v to %v: seeding wrote it", plainAt, at)
	}
	twoAt := restoredAt(t, srv.URL(), "js.shard-1-of-2")
	if !twoAt.After(plainAt) {
		t.Fatalf("shard 1 of 2 flushed at %v, not after the unsharded store (%v)", twoAt, plainAt)
	}
	// 2 shards become 3: shard 2 of 3 (within shard 1 of 2) starts from
	// the 2-shard layout, flushed last.
	check(shard.Of(2, 3), twoAt)
	// Shard 0 of 3 was flushed (empty) by the first run above, before the
	// unsharded feed and the 2 shards ran: what it holds is older than
	// what they delivered since (a rollback), so it starts again from the
	// layout flushed last, shard 0 of 2.
	check(shard.Of(0, 3), restoredAt(t, srv.URL(), "js.shard-0-of-2"))
	// Flushed now, after every other layout: a restart leaves it alone.
	kv = open()
	defer func() { _ = kv.Close() }()
	st, err = kv.Store(ctx, "js.shard-0-of-3")
	if err != nil {
		t.Fatal(err)
	}
	stores = map[string]state.Store{"js": st}
	if err := seedShardStores(ctx, kv, shard.Of(0, 3), stores, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, seeded := stores["js"].(*seededStore); seeded {
		t.Error("a shard store flushed after every other layout was seeded again")
	}
}

// restoredAt is when store was last flushed, read from the bucket's meta
// key directly (a KV's Close would write it).
func restoredAt(t *testing.T, url, store string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := natstest.JetStream(t, url).KeyValue(ctx, "ckpt")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "m."+store)
	if err != nil {
		t.Fatalf("store %s: %v", store, err)
	}
	at, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// A rollout from 2 shards to 4 that is rolled back (layoutFor moves the
// feed back once most replicas run 2 again) finds the 2-shard stores
// flushed by their own earlier run: left alone, they restore the records
// of before the rollout, and what the 4-shard layout delivered meanwhile
// is unknown to them. The object changed since is sent again from the old
// version (the id the 4-shard layout used, other data); one deleted is
// deleted again under another id. A shard store starts from the layout
// flushed last, even one it flushed itself before.
func TestSeedShardStoresAfterARollbackTakesTheLayoutFlushedLast(t *testing.T) {
	_, ctx, open := seedBucket(t)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	k := state.Key{GVR: gvr, Namespace: "ns", Name: "x"}
	two := shard.Of(0, 2)
	uid := string(uuid.NewUUID())
	for !two.Has(uid) {
		uid = string(uuid.NewUUID())
	}
	four := shard.Of(0, 4)
	if !four.Has(uid) {
		four = shard.Of(1, 4)
	}
	// 2 shards ran: x at 100.
	kv := open()
	st, err := kv.Store(ctx, shardStore("js", two))
	if err != nil {
		t.Fatal(err)
	}
	st.Put(k, state.Record{UID: uid, ResourceVersion: "100", Scope: "configmaps/ns"})
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	// The rollout: 4 shards ran and delivered x at 200.
	kv = open()
	st, err = kv.Store(ctx, shardStore("js", four))
	if err != nil {
		t.Fatal(err)
	}
	st.Put(k, state.Record{UID: uid, ResourceVersion: "200", Scope: "configmaps/ns"})
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	// Rolled back: shard 0 of 2 starts again.
	kv = open()
	defer func() { _ = kv.Close() }()
	st, err = kv.Store(ctx, shardStore("js", two))
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]state.Store{"js": st}
	if err := seedShardStores(ctx, kv, two, stores, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if r, _ := stores["js"].Get(k); r.ResourceVersion != "200" {
		t.Errorf("after the rollback, %s holds x at %q; the 4-shard layout, flushed last, delivered 200", two, r.ResourceVersion)
	}
}

// Sharding turned off again: the unsharded store, flushed when sharding
// was turned on, is older than what the shards delivered since. It starts
// from the shards' records (all of them: every uid is its own), as of
// their newest flush; a record only it held (an object the shards saw
// deleted) goes.
func TestSeedTheUnshardedStoreFromTheShardsAfterShardingIsTurnedOff(t *testing.T) {
	srv, ctx, open := seedBucket(t)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	key := func(name string) state.Key { return state.Key{GVR: gvr, Namespace: "ns", Name: name} }
	// Unsharded: a at 100, gone at 101.
	kv := open()
	plain, err := kv.Store(ctx, "js")
	if err != nil {
		t.Fatal(err)
	}
	uidA, uidGone := string(uuid.NewUUID()), string(uuid.NewUUID())
	plain.Put(key("a"), state.Record{UID: uidA, ResourceVersion: "100", Scope: "configmaps/ns"})
	plain.Put(key("gone"), state.Record{UID: uidGone, ResourceVersion: "101", Scope: "configmaps/ns"})
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	// Two shards ran: a at 200 (in its shard), gone deleted (no record).
	kv = open()
	var newest time.Time
	for i := range 2 {
		sp := shard.Of(i, 2)
		st, err := kv.Store(ctx, shardStore("js", sp))
		if err != nil {
			t.Fatal(err)
		}
		if sp.Has(uidA) {
			st.Put(key("a"), state.Record{UID: uidA, ResourceVersion: "200", Scope: "configmaps/ns"})
		}
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if at := restoredAt(t, srv.URL(), shardStore("js", shard.Of(i, 2))); at.After(newest) {
			newest = at
		}
	}
	// Unsharded again.
	kv = open()
	defer func() { _ = kv.Close() }()
	st, err := kv.Store(ctx, "js")
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]state.Store{"js": st}
	if err := seedShardStores(ctx, kv, nil, stores, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if r, _ := stores["js"].Get(key("a")); r.ResourceVersion != "200" {
		t.Errorf("a at %q, want the shards' 200", r.ResourceVersion)
	}
	if _, ok := stores["js"].Get(key("gone")); ok {
		t.Error("the record of an object the shards saw deleted is still there")
	}
	if at, ok := st.Restored(); !ok || !at.Equal(newest) {
		t.Errorf("restored %v %v, want as of the shards' newest flush %v", at, ok, newest)
	}
	// A restart of the unsharded feed after it flushed: left alone.
	stores = map[string]state.Store{"js": st}
	_ = kv.Close()
	kv = open()
	st2, err := kv.Store(ctx, "js")
	if err != nil {
		t.Fatal(err)
	}
	stores = map[string]state.Store{"js": st2}
	if err := seedShardStores(ctx, kv, nil, stores, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, seeded := stores["js"].(*seededStore); seeded {
		t.Error("an unsharded store flushed after the shards was seeded again")
	}
}

// seedBucket starts a nats-server for a seeding test and returns it, a
// context for the test, and a function that opens its checkpoint bucket.
func seedBucket(t *testing.T) (*natstest.Server, context.Context, func() *checkpoint.KV) {
	t.Helper()
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cfg := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}}, Bucket: "ckpt"}
	return srv, ctx, func() *checkpoint.KV {
		kv, err := checkpoint.OpenKV(ctx, cfg, true, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
}
