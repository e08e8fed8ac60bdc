package app

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientretry "k8s.io/client-go/util/retry"
)

// members is the registry of the replicas that share a sharded feed: one
// Lease (<leaderElection.name>-members) whose annotations hold, per
// replica, its identity, when it last said it is alive and the shards it
// runs. Each replica writes its own entry every retryPeriod (optimistic
// concurrency: a conflict waits for the next beat), drops entries silent
// for three times live, and reads the live ones to compute the shard
// assignment.
type members struct {
	client    kubernetes.Interface
	namespace string
	name      string
	identity  string
	// live is how long an entry counts after its beat.
	live time.Duration
	now  func() time.Time
	// runs, when set, lists the shards this replica runs; beat writes
	// them in its entry, so that the assignment leaves them here.
	// draining lists those it stops and that still deliver (written with
	// a "~"): a replica of another shard count waits for them.
	runs     func() []int
	draining func() []int
	// layout is this replica's sharding.shards, written in its entry (0:
	// none written).
	layout int
	// running is, after a beat, what the live entries say their replicas
	// run, by identity; layouts, the shard count each says it runs with
	// (absent: unknown). Only the goroutine that beats reads them.
	running map[string][]int
	drains  map[string][]int
	layouts map[string]int
	// seen is when this replica's clock last saw each entry change: an
	// entry is live while it keeps changing, whatever time it says (a
	// replica's clock may run ahead, or an entry be written by hand).
	seen map[string]seenEntry
}

type seenEntry struct {
	value string
	at    time.Time
}

// memberPrefix starts the annotation keys of the entries.
const memberPrefix = "members.kubefeed.io/"

// memberKey is the annotation key of identity: a hash, since identities
// (host_nanos) can be longer than an annotation name may be.
func memberKey(identity string) string {
	h := fnv.New64a()
	h.Write([]byte(identity))
	return fmt.Sprintf("%s%016x", memberPrefix, h.Sum64())
}

// beat writes this replica's entry (or, with leaving, removes it), drops
// stale ones, and returns the live members, sorted, this one included
// unless leaving; what each runs is then in m.running.
func (m *members) beat(ctx context.Context, leaving bool) ([]string, error) {
	leases := m.client.CoordinationV1().Leases(m.namespace)
	l, err := leases.Get(ctx, m.name, metav1.GetOptions{})
	create := apierrors.IsNotFound(err)
	if create {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: m.name, Namespace: m.namespace}}
	} else if err != nil {
		return nil, err
	}
	now := m.now()
	m.observe(l.Annotations, now)
	ann := map[string]string{}
	for k, v := range l.Annotations {
		if !strings.HasPrefix(k, memberPrefix) {
			ann[k] = v
			continue
		}
		if now.Sub(m.seen[k].at) < 3*m.live {
			ann[k] = v // silent for less than three times live
		}
	}
	if leaving {
		delete(ann, memberKey(m.identity))
	} else {
		var runs, draining []int
		if m.runs != nil {
			runs = m.runs()
		}
		if m.draining != nil {
			draining = m.draining()
		}
		ann[memberKey(m.identity)] = formatEntry(now, m.identity, runs, draining, m.layout)
	}
	l.Annotations = ann
	if create {
		l, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		l, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, err
	}
	m.observe(l.Annotations, now)
	ids := m.liveMembers(l.Annotations, now)
	m.running = make(map[string][]int, len(ids))
	m.layouts = make(map[string]int, len(ids))
	m.drains = make(map[string][]int, len(ids))
	for _, id := range ids {
		v := l.Annotations[memberKey(id)]
		m.running[id] = memberRuns(v)
		m.drains[id] = memberDrains(v)
		m.layouts[id] = memberLayout(v)
	}
	return ids, nil
}

// beatRetry spreads the retries of replicas that beat at the same moment
// (full jitter), and gives each enough of them to get through a crowd.
var beatRetry = wait.Backoff{Steps: 12, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: time.Second}

// beatRetrying is beat (staying), read again and retried at once on a
// conflict (or a create that lost to another replica's): every replica writes the one registry Lease each retryPeriod,
// and one that kept losing the race would stop counting as live.
func (m *members) beatRetrying(ctx context.Context) ([]string, error) {
	var live []string
	retriable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err := clientretry.OnError(beatRetry, retriable, func() error {
		var err error
		live, err = m.beat(ctx, false)
		return err
	})
	return live, err
}

// observe notes, by this replica's clock, which entries changed since the
// last beat, and forgets those gone.
func (m *members) observe(ann map[string]string, now time.Time) {
	if m.seen == nil {
		m.seen = map[string]seenEntry{}
	}
	for k, v := range ann {
		if strings.HasPrefix(k, memberPrefix) && m.seen[k].value != v {
			m.seen[k] = seenEntry{value: v, at: now}
		}
	}
	for k := range m.seen {
		if _, ok := ann[k]; !ok {
			delete(m.seen, k)
		}
	}
}

// liveMembers are the identities whose entry changed within live of now,
// by this replica's clock (the time an entry says is the writer's, which
// may run ahead or behind); an entry under another key than its
// identity's (written by hand, or restored) does not count, so no replica
// is listed twice.
func (m *members) liveMembers(ann map[string]string, now time.Time) []string {
	var out []string
	for k, v := range ann {
		if !strings.HasPrefix(k, memberPrefix) {
			continue
		}
		id, _, ok := parseMember(v)
		if !ok || k != memberKey(id) {
			continue
		}
		if now.Sub(m.seen[k].at) < m.live {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// formatMember writes an entry: "<RFC3339Nano time> <identity>", then
// " <i>,<j>,…" when the replica runs shards.
func formatMember(at time.Time, identity string, runs []int) string {
	return formatEntry(at, identity, runs, nil, 0)
}

// formatEntry is formatMember with the shards draining ("<i>~") after
// those it runs, then " n=<layout>" when layout is set (with "-" for the
// shards when it runs and drains none).
func formatEntry(at time.Time, identity string, runs, draining []int, layout int) string {
	v := at.UTC().Format(time.RFC3339Nano) + " " + identity
	var is []string
	for _, i := range runs {
		is = append(is, strconv.Itoa(i))
	}
	for _, i := range draining {
		is = append(is, strconv.Itoa(i)+"~")
	}
	if len(is) > 0 {
		v += " " + strings.Join(is, ",")
	} else if layout > 0 {
		v += " -"
	}
	if layout > 0 {
		v += " n=" + strconv.Itoa(layout)
	}
	return v
}

// memberDrains reads the shards an entry says its replica drains.
func memberDrains(v string) []int {
	_, rest, _ := strings.Cut(v, " ")
	_, list, _ := strings.Cut(rest, " ")
	list, _, _ = strings.Cut(list, " ")
	var out []int
	for _, f := range strings.Split(list, ",") {
		if d, ok := strings.CutSuffix(f, "~"); ok {
			if i, err := strconv.Atoi(d); err == nil && i >= 0 {
				out = append(out, i)
			}
		}
	}
	return out
}

// memberLayout reads the shard count an entry says its replica runs with;
// 0 when it says none.
func memberLayout(v string) int {
	for _, f := range strings.Fields(v)[min(3, len(strings.Fields(v))):] {
		if n, ok := strings.CutPrefix(f, "n="); ok {
			if i, err := strconv.Atoi(n); err == nil && i > 0 {
				return i
			}
		}
	}
	return 0
}

// parseMember reads an entry's time and identity.
func parseMember(v string) (string, time.Time, bool) {
	ts, rest, ok := strings.Cut(v, " ")
	id, _, _ := strings.Cut(rest, " ")
	if !ok || id == "" {
		return "", time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	return id, at, err == nil
}

// memberRuns reads the shards an entry says its replica runs. Numbers
// that do not parse are left out: they only make the assignment less
// sticky.
func memberRuns(v string) []int {
	_, rest, _ := strings.Cut(v, " ")
	_, list, _ := strings.Cut(rest, " ")
	list, _, _ = strings.Cut(list, " ") // " n=<layout>" follows
	var out []int
	for _, f := range strings.Split(list, ",") {
		if i, err := strconv.Atoi(f); err == nil && i >= 0 {
			out = append(out, i)
		}
	}
	return out
}

// assign is rebalance for members that run nothing yet.
func assign(members []string, n int) []string { return rebalance(members, nil, n) }

// rebalance gives each of n shards an owner among members (sorted, not
// empty) so that every member owns n/len or n/len+1 shards, and a shard
// keeps its owner when members join or leave unless the balance needs it
// elsewhere. First each shard stays with a member that runs it (running,
// by identity), while that member has room: one above its share keeps its
// lowest shards. Then every other shard goes to the member that ranks it
// highest (rendezvous hashing) among those with room. So a member that
// joins takes only what the others have beyond their new share, and the
// shards of one that left go to the others, nothing else moving. Every
// replica computes the same assignment from the same entries; where they
// read different ones (an entry written in between), the shards' Leases
// keep two replicas from running one shard until the next beat agrees.
func rebalance(members []string, running map[string][]int, n int) []string {
	m := len(members)
	floor, extra := n/m, n%m // extra members may own floor+1
	load := make(map[string]int, m)
	atCeil := 0
	out := make([]string, n)
	place := func(i int, candidates []string) {
		for _, c := range rank(candidates, i) {
			if l := load[c]; l < floor || (l == floor && atCeil < extra) {
				if l == floor {
					atCeil++
				}
				load[c]++
				out[i] = c
				return
			}
		}
	}
	runners := make([][]string, n)
	for _, id := range members {
		for _, i := range running[id] {
			if i < n && !slices.Contains(runners[i], id) {
				runners[i] = append(runners[i], id)
			}
		}
	}
	for i := range n {
		place(i, runners[i])
	}
	for i := range n {
		if out[i] == "" {
			place(i, members)
		}
	}
	return out
}

// rank orders candidates for shard i, best first (rendezvous hashing).
func rank(candidates []string, i int) []string {
	ranked := slices.Clone(candidates)
	sort.Slice(ranked, func(a, b int) bool {
		sa, sb := score(ranked[a], i), score(ranked[b], i)
		if sa != sb {
			return sa > sb
		}
		return ranked[a] < ranked[b]
	})
	return ranked
}

// score ranks member for shard i (rendezvous hashing).
func score(member string, i int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", member, i)
	return h.Sum64()
}
