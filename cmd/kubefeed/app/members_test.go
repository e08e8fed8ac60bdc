package app

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// During a rollout that lowers sharding.shards from 8 to 4, the two
// replicas of the new count run the feed against the one left of the old.
// That old replica's container crashes and restarts (same pod, same host,
// a new identity host_nanos): its dead entry counts as live for up to
// live after its last change, next to the restarted one's, so the old
// count counts the pod twice, wins the tie (the larger) and the whole feed is handed back to
// it, then back again once the dead entry expires. One pod counts once:
// the feed stays with the new count.
func TestAnOldReplicaRestartingDuringARolloutDoesNotMoveTheFeedBack(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	mk := func(id string, layout int) *members {
		return &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second, now: clock, layout: layout}
	}
	ctx := context.Background()
	old := mk("kubefeed-0_1800000000000000000", 8)
	n1, n2 := mk("kubefeed-1_1800000001000000000", 4), mk("kubefeed-2_1800000002000000000", 4)
	for _, m := range []*members{old, n1, n2} {
		if _, err := m.beat(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	live, err := n1.beat(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if active, _ := layoutFor(live, n1.layouts, n1.running, 4); active != 4 {
		t.Fatalf("before the crash: %d shards run the feed, want 4 (live %v)", active, live)
	}
	// kubefeed-0's container crashes and comes back 3s later.
	now = now.Add(3 * time.Second)
	restarted := mk("kubefeed-0_1800000003000000000", 8)
	if _, err := restarted.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if _, err := n2.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	if live, err = n1.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	if active, _ := layoutFor(live, n1.layouts, n1.running, 4); active != 4 {
		t.Errorf("one old pod restarted: %d shards run the feed, want 4 still; live %v counts kubefeed-0 twice", active, live)
	}
}

// An entry is live while it keeps changing by the reader's clock,
// "whatever time it says": a replica whose clock runs a minute behind
// (four times live) and beats every two seconds is a member. Dropped, it
// gets no shard from the others' assignment while it computes one with
// itself in it: the two assignments disagree for as long as the skew
// lasts.
func TestMembersRegistryCountsABeatingReplicaWhoseClockRunsBehind(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	behind := func() time.Time { return now.Add(-time.Minute) }
	a := &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: "a_1", live: 15 * time.Second, now: func() time.Time { return now }}
	b := &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: "b_2", live: 15 * time.Second, now: behind}
	ctx := context.Background()
	var live []string
	for range 10 {
		now = now.Add(time.Second)
		if _, err := b.beat(ctx, false); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
		var err error
		if live, err = a.beat(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(live) != 2 {
		t.Errorf("a, reading b's entry change every 2s: live %v, want [a_1 b_2]", live)
	}
}

// Replicas that beat the registry at the same moment conflict on its
// Lease; each beat retries on a conflict, so none stops counting as live
// however often it loses the race.
func TestEveryReplicaBeatsThoughTheirWritesConflict(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ids := []string{"a_1", "b_2", "c_3"}
	ms := map[string]*members{}
	for _, id := range ids {
		ms[id] = &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second, now: clock, layout: 6}
	}
	ctx := context.Background()
	for range 20 {
		mu.Lock()
		now = now.Add(2 * time.Second)
		mu.Unlock()
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Go(func() {
				if _, err := ms[id].beatRetrying(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	live, err := ms["a_1"].beat(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(live) != "[a_1 b_2 c_3]" {
		t.Errorf("live %v after 20 rounds of concurrent beats, want all three", live)
	}
}

// Seven replicas started together beat the registry Lease at the same
// moment each retryPeriod: each round of reads and writes one wins, so the
// seventh loses six races in a row every period. beatRetrying gives up
// after retry.DefaultRetry's five attempts (about 10ms apart, 10% jitter,
// so the losers stay in step), and that replica never counts as live, as
// before the retry: a retry bounded by a count, not by the contenders,
// still starves one.
func TestAReplicaThatLosesSixRacesInARowStillBeats(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	mk := func(id string) *members {
		return &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second, now: clock, layout: 6}
	}
	ctx := context.Background()
	if _, err := mk("a_1").beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	lost := 0
	cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if _, mine := l.Annotations[memberKey("g_7")]; mine && lost < 6 {
			lost++ // one of the six others wrote first
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, l.Name, fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	g := mk("g_7")
	live, err := g.beatRetrying(ctx)
	if err != nil {
		t.Fatalf("beat after losing %d races: %v", lost, err)
	}
	if fmt.Sprint(live) != "[a_1 g_7]" {
		t.Errorf("live %v, want [a_1 g_7]", live)
	}
}
