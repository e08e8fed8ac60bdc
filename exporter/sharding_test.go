package exporter

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/sinks"
)

// startShard runs an Exporter for shard sp over src, every change sent
// (initialList: emit).
func startShard(t *testing.T, src *fakeSource, sp *shard.Span) (*harness, *recorder) {
	t.Helper()
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}})
	rec := &recorder{}
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": rec}, done: make(chan struct{})}
	h.run(t, Options{Config: cfg, Resolver: newResolver(), Sinks: map[string]sinks.Sink{"rec": rec}, Shard: sp,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	return h, rec
}

// shardObjects makes n ConfigMaps with uids spread over the hash space and
// returns their names by the shard (of k) each belongs to.
func shardObjects(src *fakeSource, n, k int) map[int][]string {
	by := map[int][]string{}
	for i := 0; i < n; i++ {
		u := cm("a", fmt.Sprintf("o%d", i), nil)
		u.SetUID(types.UID(fmt.Sprintf("5f0c%04d-9d3e-4b8a-a1c2-%012d", i, i*7919)))
		src.apply(cmRes.GVR, u, true)
		for j := 0; j < k; j++ {
			if shard.Of(j, k).Has(string(u.GetUID())) {
				by[j] = append(by[j], u.GetName())
			}
		}
	}
	return by
}

// names of the objects the events carry, without gap markers.
func eventNames(evs []*event.Event) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		if e.Type != event.TypeGap {
			out[e.Name]++
		}
	}
	return out
}

// Against an API server that ignores shardSelector (ShardedListAndWatch
// off), each of three shards' exporters still sends exactly its own
// objects, listed and changed: the others are dropped client-side and
// counted. Every list and watch carried the shard's selector.
func TestShardFiltersClientSideWhenTheServerIgnoresTheSelector(t *testing.T) {
	src := newFakeSource(7) // pages: the filter works per page
	by := shardObjects(src, 60, 3)
	for i := 0; i < 3; i++ {
		if len(by[i]) == 0 {
			t.Fatalf("shard %d holds none of the 60 objects: pick other uids", i)
		}
	}
	src.noWatchList = true // paged lists, so pages are filtered too
	sp := shard.Of(1, 3)
	h, rec := startShard(t, src, sp)
	h.waitReady()
	for i := 0; i < 60; i++ {
		u := src.objs[cmRes.GVR]["a/"+fmt.Sprintf("o%d", i)].DeepCopy()
		u.Object["data"] = map[string]any{"v": "2"}
		src.apply(cmRes.GVR, u, false)
	}
	rec.waitFor(t, "shard 1's objects, added and modified", func(evs []*event.Event) bool {
		return count(evs, event.Modified.Type()) >= len(by[1])
	})
	got := eventNames(quiesce(t, h, "rec"))
	if len(got) != len(by[1]) {
		t.Errorf("sent %d objects, want shard 1's %d", len(got), len(by[1]))
	}
	for _, name := range by[1] {
		if got[name] != 2 {
			t.Errorf("%s: %d events, want added and modified", name, got[name])
		}
	}
	if n, want := h.ex.OutOfShard(), int64(2*(60-len(by[1]))); n != want {
		t.Errorf("OutOfShard = %d, want %d (each other object listed once and changed once)", n, want)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.shardSelectors) < 2 {
		t.Fatalf("shard selectors sent: %v, want one on every list page and watch", src.shardSelectors)
	}
	for _, s := range src.shardSelectors {
		if s != sp.Selector() {
			t.Errorf("shardSelector %q, want %q", s, sp.Selector())
		}
	}
}

// Against an API server that applies shardSelector, nothing is dropped
// client-side: OutOfShard stays 0, which is how kubefeed tells the two
// modes apart.
func TestShardDropsNothingWhenTheServerAppliesTheSelector(t *testing.T) {
	src := newFakeSource(0)
	by := shardObjects(src, 40, 2)
	sp := shard.Of(0, 2)
	src.honoursShards = []*shard.Span{sp}
	h, rec := startShard(t, src, sp)
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "late", nil), false)
	want := len(by[0])
	if sp.Has("uid-a/late") {
		want++
	}
	rec.waitFor(t, "shard 0's objects", func(evs []*event.Event) bool { return len(eventNames(evs)) >= want })
	got := eventNames(quiesce(t, h, "rec"))
	if len(got) != want {
		t.Errorf("sent %d objects, want %d", len(got), want)
	}
	if n := h.ex.OutOfShard(); n != 0 {
		t.Errorf("OutOfShard = %d with a server that applies the selector, want 0", n)
	}
}
