package app

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// members is the registry of the replicas that share a sharded feed: one
// Lease (<leaderElection.name>-members) whose annotations hold, per
// replica, its identity and when it last said it is alive. Each replica
// writes its own entry every retryPeriod (optimistic concurrency: a
// conflict waits for the next beat), drops entries silent for
// memberExpiry, and reads the live ones to compute the shard assignment.
type members struct {
	client    kubernetes.Interface
	namespace string
	name      string
	identity  string
	// live is how long an entry counts after its beat.
	live time.Duration
	now  func() time.Time
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
// unless leaving.
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
	ann := map[string]string{}
	for k, v := range l.Annotations {
		if !strings.HasPrefix(k, memberPrefix) {
			ann[k] = v
			continue
		}
		if _, at, ok := parseMember(v); ok && now.Sub(at) < 3*m.live {
			ann[k] = v
		}
	}
	if leaving {
		delete(ann, memberKey(m.identity))
	} else {
		ann[memberKey(m.identity)] = now.UTC().Format(time.RFC3339Nano) + " " + m.identity
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
	return liveMembers(l.Annotations, now, m.live), nil
}

// liveMembers are the identities whose entry beat within live of now.
func liveMembers(ann map[string]string, now time.Time, live time.Duration) []string {
	var out []string
	for k, v := range ann {
		if !strings.HasPrefix(k, memberPrefix) {
			continue
		}
		if id, at, ok := parseMember(v); ok && now.Sub(at) < live {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// parseMember reads an entry: "<RFC3339Nano time> <identity>".
func parseMember(v string) (string, time.Time, bool) {
	ts, id, ok := strings.Cut(v, " ")
	if !ok || id == "" {
		return "", time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	return id, at, err == nil
}

// assign gives each of n shards an owner among members (sorted, not
// empty) so that every member owns n/len or n/len+1 shards, and a shard
// keeps its owner when members join or leave unless the balance needs it
// elsewhere: each shard goes to the member that ranks it highest
// (rendezvous hashing) among those with room.
func assign(members []string, n int) []string {
	m := len(members)
	floor, extra := n/m, n%m // extra members may own floor+1
	load := make(map[string]int, m)
	atCeil := 0
	out := make([]string, n)
	for i := 0; i < n; i++ {
		ranked := append([]string(nil), members...)
		sort.Slice(ranked, func(a, b int) bool {
			sa, sb := score(ranked[a], i), score(ranked[b], i)
			if sa != sb {
				return sa > sb
			}
			return ranked[a] < ranked[b]
		})
		for _, c := range ranked {
			l := load[c]
			if l < floor || (l == floor && atCeil < extra) {
				if l == floor {
					atCeil++
				}
				load[c]++
				out[i] = c
				break
			}
		}
	}
	return out
}

// score ranks member for shard i (rendezvous hashing).
func score(member string, i int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", member, i)
	return h.Sum64()
}
