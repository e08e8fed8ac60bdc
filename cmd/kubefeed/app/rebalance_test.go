package app

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// Members that run what they were given get the same assignment again:
// nothing moves while nobody joins or leaves.
func TestRebalanceKeepsARunningAssignment(t *testing.T) {
	for _, m := range []int{1, 2, 3, 5, 7, 12, 13} {
		for _, n := range []int{1, 3, 6, 7, 12, 64} {
			ids := memberIDs(fmt.Sprint(m, n), m)
			owners := assign(ids, n)
			checkEven(t, fmt.Sprintf("m=%d n=%d", m, n), ids, owners)
			if again := rebalance(ids, runningOf(owners), n); fmt.Sprint(again) != fmt.Sprint(owners) {
				t.Errorf("m=%d n=%d: members running their shards get another assignment:\n%v\n%v", m, n, owners, again)
			}
		}
	}
}

// A member joining or leaving moves only what the balance needs: a joiner
// takes its share from the others, the shards of one that left go to the
// others, and no shard moves between members that stay (the e2e tests saw
// assign, which knows nothing of what runs where, do that in 5 of 6
// rebalances).
func TestRebalanceMovesOnlyWhatTheBalanceNeeds(t *testing.T) {
	for _, tc := range []struct{ m, n int }{{1, 6}, {2, 6}, {3, 6}, {3, 7}, {4, 12}, {5, 64}, {3, 64}, {7, 3}} {
		for trial := range 50 {
			name := fmt.Sprintf("m=%d n=%d trial %d", tc.m, tc.n, trial)
			ids := memberIDs(fmt.Sprint(trial), tc.m)
			before := assign(ids, tc.n)

			joiner := fmt.Sprintf("host-new_%d", trial)
			joined := append(slices.Clone(ids), joiner)
			slices.Sort(joined)
			after := rebalance(joined, runningOf(before), tc.n)
			checkEven(t, name+" join", joined, after)
			for i := range after {
				if after[i] != before[i] && after[i] != joiner {
					t.Errorf("%s join: shard %d moved from %s to %s, not to the joiner", name, i, before[i], after[i])
				}
			}

			if tc.m == 1 {
				continue
			}
			gone := ids[trial%tc.m]
			rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == gone })
			after = rebalance(rest, runningOf(before), tc.n)
			checkEven(t, name+" leave", rest, after)
			for i := range after {
				if after[i] != before[i] && before[i] != gone {
					t.Errorf("%s leave: shard %d moved from %s, which stayed, to %s", name, i, before[i], after[i])
				}
			}
		}
	}
}

// What the entries say may be stale or disputed: two members that both
// say they run a shard (a handover read half-way), a member above its
// share, shard numbers beyond n (another shard count). The assignment is
// still even and complete.
func TestRebalanceWithDisputedOrStaleEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ids     []string
		running map[string][]int
		n       int
	}{
		{"both run shard 0", []string{"a", "b", "c"}, map[string][]int{"a": {0, 1}, "b": {0, 2}}, 6},
		{"one runs everything", []string{"a", "b", "c"}, map[string][]int{"a": {0, 1, 2, 3, 4, 5}}, 6},
		{"shards beyond n", []string{"a", "b"}, map[string][]int{"a": {7, 9}, "b": {1}}, 4},
		{"an entry of a member not live", []string{"a", "b"}, map[string][]int{"gone": {0, 1, 2}}, 3},
	} {
		owners := rebalance(tc.ids, tc.running, tc.n)
		checkEven(t, tc.name, tc.ids, owners)
		if again := rebalance(tc.ids, tc.running, tc.n); fmt.Sprint(again) != fmt.Sprint(owners) {
			t.Errorf("%s: not deterministic", tc.name)
		}
	}
	owners := rebalance([]string{"a", "b", "c"}, map[string][]int{"a": {0, 1, 2, 3, 4, 5}}, 6)
	if kept := runningOf(owners)["a"]; fmt.Sprint(kept) != "[0 1]" {
		t.Errorf("a member running all 6 shards of 3 members keeps %v, want its lowest two [0 1]", kept)
	}
}

// An entry carries the shards its replica runs, and one without them (a
// replica running none) still reads as a member.
func TestMemberEntryCarriesTheShardsItRuns(t *testing.T) {
	at := time.Unix(1_800_000_000, 5).UTC()
	for _, runs := range [][]int{nil, {0}, {3, 11, 63}} {
		v := formatMember(at, "host_1765", runs)
		id, got, ok := parseMember(v)
		if !ok || id != "host_1765" || !got.Equal(at) {
			t.Errorf("%q: parsed %q %v %v", v, id, got, ok)
		}
		if r := memberRuns(v); fmt.Sprint(r) != fmt.Sprint(runs) && len(r)+len(runs) > 0 {
			t.Errorf("%q: runs %v, want %v", v, r, runs)
		}
	}
	if r := memberRuns("2026-12-07T14:00:00Z host_1 1,x,-2,4"); fmt.Sprint(r) != "[1 4]" {
		t.Errorf("runs of a damaged entry: %v, want [1 4]", r)
	}

	cs := fake.NewSimpleClientset()
	now := time.Unix(1_800_000_000, 0)
	mk := func(id string, runs []int) *members {
		return &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: 15 * time.Second,
			now: func() time.Time { return now }, runs: func() []int { return runs }}
	}
	a, b := mk("a_1", []int{0, 4}), mk("b_2", nil)
	ctx := context.Background()
	if _, err := a.beat(ctx, false); err != nil {
		t.Fatal(err)
	}
	live, err := b.beat(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(live) != "[a_1 b_2]" || fmt.Sprint(b.running) != "map[a_1:[0 4] b_2:[]]" {
		t.Errorf("b read members %v running %v, want a_1 running [0 4] and b_2 nothing", live, b.running)
	}
}

// memberIDs are m identities like kubefeed's (host_nanos), sorted.
func memberIDs(seed string, m int) []string {
	ids := make([]string, m)
	for i := range ids {
		ids[i] = fmt.Sprintf("host-%s_%d", seed, 1765000000000000000+i*104729)
	}
	slices.Sort(ids)
	return ids
}

// runningOf is what each member runs under owners.
func runningOf(owners []string) map[string][]int {
	out := map[string][]int{}
	for i, o := range owners {
		out[o] = append(out[o], i)
	}
	return out
}

// checkEven fails unless every shard has an owner among ids and each owns
// n/m or n/m+1.
func checkEven(t *testing.T, name string, ids, owners []string) {
	t.Helper()
	n, m := len(owners), len(ids)
	load := map[string]int{}
	for i, o := range owners {
		if !slices.Contains(ids, o) {
			t.Fatalf("%s: shard %d owned by %q, not a member", name, i, o)
		}
		load[o]++
	}
	for _, id := range ids {
		if l := load[id]; l < n/m || l > n/m+1 {
			t.Errorf("%s: %s owns %d shards, want %d or %d", name, id, l, n/m, n/m+1)
		}
	}
}
