package exporter

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Audit of appendRules' fast path (commit 6fa300c): lookup may hand back a
// scope table's own rules slice. These tests compare it with the previous
// appendRules and check that nothing derived from it can write into a
// table.

// oldAppendRules8 is appendRules before 6fa300c, a frozen copy: the
// reference of TestAppendRulesAsBeforeAudit8.
func oldAppendRules8(dst, src []*rule, sink string) []*rule {
	for _, rl := range src {
		if !rl.routesTo(sink) {
			continue
		}
		i := 0
		for i < len(dst) && dst[i].index < rl.index {
			i++
		}
		if i < len(dst) && dst[i] == rl {
			continue
		}
		dst = append(dst[:i], append([]*rule{rl}, dst[i:]...)...)
	}
	return dst
}

// fullCopy copies s up to its capacity, to see writes beyond its length.
func fullCopy(s []*rule) []*rule { return append([]*rule(nil), s[:cap(s)]...) }

func sameRules(a, b []*rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ruleList(rs []*rule) string {
	s := "["
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		if r == nil {
			s += "nil"
			continue
		}
		s += fmt.Sprintf("%d%v@%p", r.index, r.sinks, r)
	}
	return s + "]"
}

// On random rule pools and tables (indexes shared by distinct rules,
// sinks routed or not, duplicates, tables out of config order, empty and
// nil tables, spare capacity), chains of appendRules as lookup makes them
// (one to four scopes) give exactly the rules the previous appendRules
// gave, in the same order, never write into any table (up to its
// capacity), and an append to the result never writes into a table.
func TestAppendRulesAsBeforeAudit8(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 6))
	sinkNames := []string{"s", "t"}
	fast := 0
	for iter := 0; iter < 20000; iter++ {
		pool := make([]*rule, 1+rng.IntN(7))
		for i := range pool {
			rl := &rule{index: i}
			if rng.IntN(5) == 0 && i > 0 {
				rl.index = pool[rng.IntN(i)].index // two rules of one index
			}
			switch rng.IntN(4) {
			case 0:
				rl.sinks = []string{"s"}
			case 1:
				rl.sinks = []string{"t"}
			case 2:
				rl.sinks = []string{"t", "s"}
			}
			pool[i] = rl
		}
		tables := make([][]*rule, 1+rng.IntN(4))
		for i := range tables {
			n := rng.IntN(6)
			if n == 0 && rng.IntN(2) == 0 {
				continue // nil table
			}
			tb := make([]*rule, 0, n+rng.IntN(4))
			switch rng.IntN(3) {
			case 0: // config order, as joinScopes at start builds them
				perm := rng.Perm(len(pool))[:min(n, len(pool))]
				slices.Sort(perm)
				for _, j := range perm {
					tb = append(tb, pool[j])
				}
			default: // any order, duplicates allowed
				for j := 0; j < n; j++ {
					tb = append(tb, pool[rng.IntN(len(pool))])
				}
			}
			tables[i] = tb
		}
		before := make([][]*rule, len(tables))
		for i, tb := range tables {
			before[i] = fullCopy(tb)
		}
		for _, sink := range sinkNames {
			var got, want []*rule
			for _, tb := range tables {
				if len(got) == 0 && allRouteInOrder(tb, sink) && len(tb) > 0 {
					fast++
				}
				got = appendRules(got, tb, sink)
				want = oldAppendRules8(want, tb, sink)
			}
			if !sameRules(got, want) {
				t.Fatalf("iter %d sink %s: tables %v: got %s, want %s", iter, sink, tables, ruleList(got), ruleList(want))
			}
			// What a caller may do with cur.rules: append to it. (Not
			// append to a prefix of it, sort it, or assign its elements:
			// those write within its length, which no cap can prevent;
			// no caller does.)
			_ = append(got, &rule{index: 99})
			for i, tb := range tables {
				if !sameRules(fullCopy(tb), before[i]) {
					t.Fatalf("iter %d sink %s: table %d written: %s, was %s", iter, sink, i, ruleList(fullCopy(tb)), ruleList(before[i]))
				}
			}
		}
	}
	if fast == 0 {
		t.Fatal("the fast path was never taken")
	}
}

// The rules that render a deletion do not change with the fast path:
// deletionRules over the table's own slice and over the previous
// appendRules' copy agree for every delivered rule number (known, unknown,
// out of range), and what deletionRules returns (its fallback is the rules
// themselves) cannot be appended into the table's spare capacity.
func TestDeletionRulesFromTableSliceAudit8(t *testing.T) {
	r0 := &rule{index: 0, sinks: []string{"s"}}
	r1 := &rule{index: 1, sinks: []string{"s"}}
	r2 := &rule{index: 2, sinks: []string{"s"}}
	table := make([]*rule, 0, 6) // spare capacity, as scope.update's copy may have
	table = append(table, r0, r1, r2)
	before := fullCopy(table)
	got := appendRules(nil, table, "s")
	if &got[0] != &table[0] {
		t.Fatal("the fast path was not taken: this test means to exercise the table's own slice")
	}
	final := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	for delivered := -1; delivered <= 4; delivered++ {
		dr := deletionRules(got, delivered, final)
		want := deletionRules(oldAppendRules8(nil, table, "s"), delivered, final)
		if !sameRules(dr, want) {
			t.Fatalf("delivered %d: deletion rules %s, want %s", delivered, ruleList(dr), ruleList(want))
		}
		_ = append(dr, &rule{index: 7})
		if hasRule(got, delivered) != hasRule(before[:3], delivered) {
			t.Fatalf("hasRule(%d) differs", delivered)
		}
	}
	if !sameRules(fullCopy(table), before) {
		t.Fatalf("the table was written: %s, was %s", ruleList(fullCopy(table)), ruleList(before))
	}
}
