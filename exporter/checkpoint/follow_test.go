package checkpoint

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// openTestKV opens bucket cp on url as one replica does.
func openTestKV(t *testing.T, ctx context.Context, url string) *KV {
	t.Helper()
	kv, err := OpenKV(ctx, config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{url}}, Bucket: "cp"}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.nc.Close() })
	return kv
}

func names(s *Store) map[string]string {
	out := map[string]string{}
	s.Range(func(k state.Key, r state.Record) bool { out[k.Name] = r.ResourceVersion; return true })
	return out
}

// A standby's follower holds what the leader wrote, puts and deletions,
// as the leader writes it; the write made just before Lead is there too
// (Lead catches up with the bucket's last revision); from Lead on the
// stores are flushed by the new leader's KV.
func TestFollowerHoldsTheLeadersWritesAndTakesOverTheStores(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := openTestKV(t, ctx, srv.URL())
	ls, err := leader.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	ls.Put(cmKey("a"), configMap("a", "1"))
	ls.Put(cmKey("b"), configMap("b", "1"))
	if err := leader.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	standby := openTestKV(t, ctx, srv.URL())
	f := standby.Follow([]string{"audit", "other"})
	if ok, why := f.Following(); ok || why == "" {
		t.Errorf("Following() before Run = %v %q, want false with a reason", ok, why)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go f.Run(runCtx)
	waitFor(t, "the follower to load", func() bool { ok, _ := f.Following(); return ok })
	if got := names(f.Store("audit")); len(got) != 2 {
		t.Fatalf("followed records %v, want a and b", got)
	}
	if _, ok := f.Store("audit").Restored(); !ok {
		t.Error("the leader's flush time was not followed")
	}

	// The leader goes on: c added, a deleted; followed as written.
	ls.Put(cmKey("c"), configMap("c", "1"))
	ls.Delete(cmKey("a"))
	if err := leader.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to apply c and a's deletion", func() bool {
		got := names(f.Store("audit"))
		_, a := got["a"]
		_, c := got["c"]
		return c && !a
	})
	if len(f.Store("audit").takeDirty()) != 0 {
		t.Error("following marked records dirty: a standby would write them")
	}

	// The leader's last write, then the standby leads at once.
	rec := configMap("b", "2")
	rec.ResourceVersion = "8"
	ls.Put(cmKey("b"), rec)
	if err := leader.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Lead(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(f.Store("audit")); got["b"] != "8" || len(got) != 2 {
		t.Fatalf("records at Lead %v, want b at 8 and c", got)
	}
	// From now on the standby's KV flushes these stores.
	f.Store("audit").Put(cmKey("d"), configMap("d", "1"))
	if err := standby.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := openTestKV(t, ctx, srv.URL()).Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(again); len(got) != 3 || got["d"] != "7" {
		t.Errorf("bucket after the new leader's flush: %v, want b, c and d", got)
	}
}

// A follower that never ran (or whose watch is down) reads the bucket
// when it leads.
func TestFollowerThatNeverRanReadsTheBucketAtLead(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := openTestKV(t, ctx, srv.URL())
	ls, err := leader.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	ls.Put(cmKey("a"), configMap("a", "1"))
	if err := leader.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	old := catchUpTimeout
	catchUpTimeout = 200 * time.Millisecond
	defer func() { catchUpTimeout = old }()
	f := openTestKV(t, ctx, srv.URL()).Follow([]string{"audit"})
	if err := f.Lead(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(f.Store("audit")); got["a"] != "7" {
		t.Errorf("records at Lead %v, want a", got)
	}
	if _, ok := f.Store("audit").Restored(); !ok {
		t.Error("the flush time was not read at Lead")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A record of the older format (legacy) that the leader rewrote while a
// standby followed it is no longer legacy in the standby's store: when
// the standby leads, its first flush does not write the leader's current
// record back without its state (the state a later deletion or diff
// starts from).
func TestFollowerForgetsThatARecordWasLegacyOnceTheLeaderRewritesIt(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := openTestKV(t, ctx, srv.URL())
	// An older kubefeed wrote a: format 1.
	v, err := encodeRecord(configMap("a", "1"), true)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "f")
	legacy, _ := json.Marshal(m)
	if _, err := leader.kv.Put(ctx, kvKey("audit", cmKey("a")), legacy); err != nil {
		t.Fatal(err)
	}

	standby := openTestKV(t, ctx, srv.URL())
	f := standby.Follow([]string{"audit"})
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go f.Run(runCtx)
	waitFor(t, "the follower to load", func() bool { ok, _ := f.Following(); return ok })

	// The leader (this version) restores a and delivers a new version of
	// it: written in the current format, with its state.
	ls, err := leader.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	rec := configMap("a", "2")
	rec.ResourceVersion = "8"
	ls.Put(cmKey("a"), rec)
	if err := leader.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to apply a at 8", func() bool { return names(f.Store("audit"))["a"] == "8" })

	if err := f.Lead(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := leader.kv.Get(ctx, kvKey("audit", cmKey("a")))
	if err != nil {
		t.Fatal(err)
	}
	got, isLegacy, err := decodeRecord(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if isLegacy || got.ResourceVersion != "8" || got.Object == nil {
		t.Errorf("a after the new leader's first flush: legacy=%v rv=%s state=%v (%s), want the leader's record at 8 with its state", isLegacy, got.ResourceVersion, got.Object != nil, e.Value())
	}
}
