package app

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/shard"
)

// Every member owns n/m or n/m+1 shards, every shard has one owner, and
// the assignment is the same whoever computes it.
func TestAssignIsEvenAndComplete(t *testing.T) {
	for _, m := range []int{1, 2, 3, 5, 7, 12, 13} {
		for _, n := range []int{1, 3, 6, 12, 64} {
			members := make([]string, m)
			for i := range members {
				members[i] = fmt.Sprintf("host-%d_17650000%02d", i, i)
			}
			owners := assign(members, n)
			load := map[string]int{}
			for i, o := range owners {
				if o == "" {
					t.Fatalf("m=%d n=%d: shard %d has no owner", m, n, i)
				}
				load[o]++
			}
			for _, mem := range members {
				if l := load[mem]; l < n/m || l > n/m+1 {
					t.Errorf("m=%d n=%d: %s owns %d shards, want %d or %d", m, n, mem, l, n/m, n/m+1)
				}
			}
			if again := assign(append([]string(nil), members...), n); fmt.Sprint(again) != fmt.Sprint(owners) {
				t.Errorf("m=%d n=%d: assign is not deterministic", m, n)
			}
		}
	}
}

// A replica joining or leaving moves few shards: at 12 shards, a fourth
// replica takes three, and most stay where they were.
func TestAssignMovesFewShardsWhenAMemberJoins(t *testing.T) {
	three := []string{"a", "b", "c"}
	before := assign(three, 12)
	after := assign([]string{"a", "b", "c", "d"}, 12)
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
		}
	}
	if moved > 6 {
		t.Errorf("%d of 12 shards moved when a fourth replica joined, want at most 6 (3 must)", moved)
	}
}

// The registry keeps live members, drops one that stopped beating, and
// removes one that leaves.
func TestMembersRegistryTracksLiveReplicas(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	mk := func(id string) *members {
		return &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second, now: clock}
	}
	a, b := mk("a_1"), mk("b_2")
	ctx := context.Background()
	if _, err := a.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	live, err := b.beat(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(live) != "[a_1 b_2]" {
		t.Fatalf("live members %v, want [a_1 b_2]", live)
	}
	now = now.Add(20 * time.Second) // a stopped beating
	if live, _ = b.beat(ctx, false); fmt.Sprint(live) != "[b_2]" {
		t.Errorf("after a's silence: %v, want [b_2]", live)
	}
	if live, _ = b.beat(ctx, true); len(live) != 0 {
		t.Errorf("after b left: %v, want none", live)
	}
}

// shardLog records which replica runs which shard's pipeline, and fails
// the test when two run one shard at once.
type shardLog struct {
	t   *testing.T
	mu  sync.Mutex
	by  map[int]string
	ran map[int]int // pipelines started per shard
}

func (l *shardLog) pipeline(id string) func(sp *shard.Span) leaderPipeline {
	return func(sp *shard.Span) leaderPipeline {
		return func(ctx, _ context.Context) error {
			l.mu.Lock()
			if other, ok := l.by[sp.I]; ok {
				l.t.Errorf("%s: %s and %s run it at once", sp, other, id)
			}
			l.by[sp.I] = id
			l.ran[sp.I]++
			l.mu.Unlock()
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // a drain
			l.mu.Lock()
			delete(l.by, sp.I)
			l.mu.Unlock()
			return nil
		}
	}
}

func (l *shardLog) owners() map[string][]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]int{}
	for i, id := range l.by {
		out[id] = append(out[id], i)
	}
	return out
}

func startShardSet(t *testing.T, cs kubernetes.Interface, id string, l *shardLog) (stop func() error) {
	le := config.LeaderElection{Enabled: true, Namespace: "kf", Name: "kubefeed"}
	le.LeaseDuration.Duration, le.RenewDeadline.Duration, le.RetryPeriod.Duration = 900*time.Millisecond, 600*time.Millisecond, 100*time.Millisecond
	log := zaptest.NewLogger(t).Named(id)
	ss := &shardSet{n: 6, log: log, held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "h"}), pipeline: l.pipeline(id),
		lo:      leadOptions{Client: cs, Election: le, Identity: id, StopTimeout: 5 * time.Second, Log: log},
		members: &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: le.LeaseDuration.Duration, now: time.Now}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ss.run(ctx) }()
	return func() error { cancel(); return <-done }
}

// Three replicas over six shards: each runs two, no shard runs twice at
// once, and when one leaves its shards move to the others.
func TestShardSetsSplitShardsEvenlyAndHandOver(t *testing.T) {
	cs := fake.NewSimpleClientset()
	l := &shardLog{t: t, by: map[int]string{}, ran: map[int]int{}}
	stops := map[string]func() error{}
	for _, id := range []string{"a", "b", "c"} {
		stops[id] = startShardSet(t, cs, id, l)
	}
	defer func() {
		for _, s := range stops {
			_ = s()
		}
	}()
	balanced := func(want int) bool {
		o := l.owners()
		if len(o) != want {
			return false
		}
		total := 0
		for _, s := range o {
			if len(s) != 6/want {
				return false
			}
			total += len(s)
		}
		return total == 6
	}
	waitUntil(t, 20*time.Second, "two shards each", func() bool { return balanced(3) })
	if err := stops["c"](); err != nil {
		t.Fatalf("c stopped with %v", err)
	}
	delete(stops, "c")
	waitUntil(t, 20*time.Second, "three shards each after c left", func() bool { return balanced(2) })
	if _, err := cs.CoordinationV1().Leases("kf").Get(context.Background(), "kubefeed-shard-5", metav1.GetOptions{}); err != nil {
		t.Errorf("shard Lease: %v", err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A replica that stopped beating is dropped after live, however far ahead
// its clock ran: an entry dated in the future (a skewed clock, or a
// malformed far-future time) would otherwise count as live until that
// time comes, and the shards assigned to the dead replica would run
// nowhere meanwhile.
func TestMembersRegistryDropsASilentReplicaWhoseClockRanAhead(t *testing.T) {
	for _, ahead := range []time.Duration{time.Hour, 24 * 365 * time.Hour} {
		t.Run(ahead.String(), func(t *testing.T) {
			cs := fake.NewSimpleClientset()
			now := time.Unix(1_800_000_000, 0)
			ghostNow := now.Add(ahead)
			mk := func(id string, clock *time.Time) *members {
				return &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second, now: func() time.Time { return *clock }}
			}
			ghost, b := mk("ghost_1", &ghostNow), mk("b_2", &now)
			ctx := context.Background()
			if _, err := ghost.beat(ctx, false); err != nil {
				t.Fatal(err)
			}
			// ghost dies; b beats on for a minute, four times live.
			var live []string
			for range 30 {
				now = now.Add(2 * time.Second)
				var err error
				if live, err = b.beat(ctx, false); err != nil {
					t.Fatal(err)
				}
			}
			if fmt.Sprint(live) != "[b_2]" {
				t.Errorf("a minute after ghost's last beat: live %v, want [b_2] (ghost's shards: %v)", live, ownedBy(assign(live, 6), "ghost_1"))
			}
		})
	}
}

// ownedBy lists the shards owners gives to id.
func ownedBy(owners []string, id string) []int {
	var out []int
	for i, o := range owners {
		if o == id {
			out = append(out, i)
		}
	}
	return out
}

// An entry under a key that is not its identity's (written by hand, or
// restored from a backup of the Lease) does not list a replica twice: a
// member counted twice leaves shards with no owner, and they run nowhere.
func TestMembersRegistryListsAReplicaOnceAndEveryShardGetsAnOwner(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	stamp := now.UTC().Format(time.RFC3339Nano)
	ctx := context.Background()
	if _, err := cs.CoordinationV1().Leases("kf").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kubefeed-members", Namespace: "kf",
		Annotations: map[string]string{memberPrefix + "copy-of-a": stamp + " a_1", memberKey("a_1"): stamp + " a_1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: "b_2", live: 15 * time.Second, now: func() time.Time { return now }}
	live, err := b.beat(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(live) != "[a_1 b_2]" {
		t.Errorf("live members %v, want [a_1 b_2]", live)
	}
	for _, n := range []int{3, 6, 64} {
		if got := ownedBy(assign(live, n), ""); len(got) > 0 {
			t.Errorf("%d shards among %v: shards %v have no owner", n, live, got)
		}
	}
}

// spanLog records the hash ranges whose pipelines run, by replica, and
// fails the test when two replicas run overlapping ranges at once: both
// would deliver those objects, each from its own checkpoint, with no order
// between them.
type spanLog struct {
	t       *testing.T
	mu      sync.Mutex
	running map[string][]*shard.Span // by replica
	starts  int
}

func (l *spanLog) pipeline(id string) func(sp *shard.Span) leaderPipeline {
	return func(sp *shard.Span) leaderPipeline {
		return func(ctx, _ context.Context) error {
			lo, hi := shard.Range(sp.I, sp.N)
			l.mu.Lock()
			for other, spans := range l.running {
				for _, o := range spans {
					olo, ohi := shard.Range(o.I, o.N)
					if other != id && (hi == 0 || olo < hi) && (ohi == 0 || lo < ohi) {
						l.t.Errorf("%s runs %s while %s runs %s: overlapping uid ranges", id, sp, other, o)
					}
				}
			}
			l.running[id] = append(l.running[id], sp)
			l.starts++
			l.mu.Unlock()
			<-ctx.Done()
			l.mu.Lock()
			l.running[id] = slices.DeleteFunc(l.running[id], func(x *shard.Span) bool { return x == sp })
			l.mu.Unlock()
			return nil
		}
	}
}

// covered reports whether the ranges running cover the whole hash space,
// and the first gap if not.
func (l *spanLog) covered() (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	type r struct{ lo, hi uint64 } // hi 0: 2^64
	var rs []r
	for _, spans := range l.running {
		for _, sp := range spans {
			lo, hi := shard.Range(sp.I, sp.N)
			rs = append(rs, r{lo, hi})
		}
	}
	slices.SortFunc(rs, func(a, b r) int { return cmp.Compare(a.lo, b.lo) })
	next := uint64(0) // covered up to here
	for _, x := range rs {
		if x.lo > next {
			break
		}
		if x.hi == 0 {
			return true, ""
		}
		next = max(next, x.hi)
	}
	return false, fmt.Sprintf("uid hashes from %#x run nowhere", next)
}

// During a rollout that changes sharding.shards, replicas of the old and
// the new count run side by side, and Lease <name>-shard-I guards shard I
// of either count: shard I of 4 and shard J of 8 cover overlapping uid
// ranges under different Leases, and ranges the old count handed over may
// belong to Leases the old replica still holds. Replicas that disagree on
// the count never run overlapping ranges at once, and every uid range
// runs somewhere.
func TestShardSetsOfDifferentShardCountsCoverEveryRangeOnce(t *testing.T) {
	cs := fake.NewSimpleClientset()
	l := &spanLog{t: t, running: map[string][]*shard.Span{}}
	start := func(id string, n int) func() error { return runShardSet(t, cs, id, n, l.pipeline(id)) }
	stopOld := start("old-4", 4)
	defer func() { _ = stopOld() }()
	waitUntil(t, 20*time.Second, "the old replica to run its four shards", func() bool { ok, _ := l.covered(); return ok })
	stopNew := start("new-8", 8)
	defer func() { _ = stopNew() }()
	waitUntil(t, 20*time.Second, "the new replica to run a shard", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.running["new-8"]) > 0
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, gap := l.covered()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			t.Errorf("10s after the new replica joined: %s; running %v", gap, l.running)
			l.mu.Unlock()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An entry without n= (a replica of a kubefeed from before entries named
// their shard count) is counted as the reader's own count: replicas of 8
// and of 4 shards reading the same registry then each see their own count
// win, and each runs its layout (or waits for the other forever). Every
// replica must compute the same count from the same entries.
func TestLayoutForIsTheSameForEveryReplicaWhenAnEntryNamesNoCount(t *testing.T) {
	live := []string{"a_1", "b_2", "c_3"}
	layouts := map[string]int{"a_1": 8, "b_2": 4, "c_3": 0} // c_3 wrote no n=
	running := map[string][]int{"a_1": {0, 1}, "b_2": {1}, "c_3": {2}}
	byA, _ := layoutFor(live, layouts, running, 8)
	byB, _ := layoutFor(live, layouts, running, 4)
	if byA != byB {
		t.Errorf("the same registry: the replica of 8 shards says %d run the feed, the replica of 4 says %d", byA, byB)
	}
}

// drainLog is spanLog whose pipelines of one replica drain for a while
// after they are stopped, still delivering, before they return (and the
// shard's Lease is released).
type drainLog struct {
	spanLog
	drain map[string]time.Duration
}

func (l *drainLog) pipeline(id string) func(sp *shard.Span) leaderPipeline {
	inner := l.spanLog.pipeline(id)
	return func(sp *shard.Span) leaderPipeline {
		p := inner(sp)
		return func(ctx, sendCtx context.Context) error {
			stopped := make(chan struct{})
			draining, drained := context.WithCancel(context.Background())
			go func() {
				<-ctx.Done()
				close(stopped)
				time.Sleep(l.drain[id]) // still sending what it queued
				drained()
			}()
			err := p(draining, sendCtx)
			<-stopped
			return err
		}
	}
}

// A replica standing aside for another sharding.shards drains its shards
// before it releases them, and drains take seconds (queued keys, the last
// checkpoint flush). Its registry entry must go on naming those shards
// until they returned: the winners' Leases have other names for the same
// uid ranges, so the entry is all that keeps them from starting while the
// old pipelines still deliver (two pipelines on one uid, no order between
// them, and shard stores seeded before the old ones' final flush).
func TestShardSetsOfANewCountWaitForTheOldCountsDrainsBeforeStarting(t *testing.T) {
	cs := fake.NewSimpleClientset()
	l := &drainLog{spanLog: spanLog{t: t, running: map[string][]*shard.Span{}}, drain: map[string]time.Duration{"old-4": 1500 * time.Millisecond}}
	start := func(id string, n int) func() error { return runShardSet(t, cs, id, n, l.pipeline(id)) }
	stopOld := start("old-4", 4)
	defer func() { _ = stopOld() }()
	waitUntil(t, 20*time.Second, "the old replica to run its four shards", func() bool { ok, _ := l.covered(); return ok })
	stopNew := start("new-8", 8) // a tie: the larger count, 8, runs the feed
	defer func() { _ = stopNew() }()
	waitUntil(t, 20*time.Second, "the new replica to run its eight shards", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.running["new-8"]) == 8
	})
}

// runShardSet runs replica id's shardSet of n shards on cs with Lease
// timings of whole seconds (a Lease records its duration in seconds), and
// returns its stop.
func runShardSet(t *testing.T, cs *fake.Clientset, id string, n int, pipeline func(*shard.Span) leaderPipeline) func() error {
	le := config.LeaderElection{Enabled: true, Namespace: "kf", Name: "kubefeed"}
	le.LeaseDuration.Duration, le.RenewDeadline.Duration, le.RetryPeriod.Duration = 2*time.Second, 1500*time.Millisecond, 200*time.Millisecond
	log := zaptest.NewLogger(t).Named(id)
	ss := &shardSet{n: n, log: log, held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "h"}), pipeline: pipeline,
		lo:      leadOptions{Client: cs, Election: le, Identity: id, StopTimeout: 5 * time.Second, Log: log},
		members: &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: le.LeaseDuration.Duration, now: time.Now}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ss.run(ctx) }()
	return func() error { cancel(); return <-done }
}
