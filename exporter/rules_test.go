package exporter

import "testing"

// appendRules hands back a table's own slice only when all its rules
// route to the sink in config order, and never writes into that slice
// when another scope's rules are merged after it.
func TestAppendRulesLeavesTheTableAlone(t *testing.T) {
	r1 := &rule{index: 0, sinks: []string{"s"}}
	r2 := &rule{index: 1, sinks: []string{"other"}}
	r3 := &rule{index: 2, sinks: []string{"s"}}
	r4 := &rule{index: 3, sinks: []string{"s"}}
	table := make([]*rule, 0, 8) // room to append into: a merge must not use it
	table = append(table, r1, r4)
	got := appendRules(nil, table, "s")
	if len(got) != 2 || got[0] != r1 || got[1] != r4 {
		t.Fatalf("one scope: %v", got)
	}
	got = appendRules(got, []*rule{r2, r3}, "s") // r3 goes between r1 and r4
	if len(got) != 3 || got[0] != r1 || got[1] != r3 || got[2] != r4 {
		t.Fatalf("merged: %v", got)
	}
	if table[0] != r1 || table[1] != r4 || table[:3][2] != nil {
		t.Fatalf("the table was written into: %v", table[:3])
	}
	// Rules that do not all route here are filtered, as before.
	if got := appendRules(nil, []*rule{r1, r2, r3}, "s"); len(got) != 2 || got[0] != r1 || got[1] != r3 {
		t.Fatalf("filtered: %v", got)
	}
	// Out of config order: sorted, as before.
	if got := appendRules(nil, []*rule{r4, r1}, "s"); len(got) != 2 || got[0] != r1 || got[1] != r4 {
		t.Fatalf("sorted: %v", got)
	}
	// A rule already there is not added twice.
	if got := appendRules([]*rule{r1, r4}, []*rule{r1}, "s"); len(got) != 2 {
		t.Fatalf("duplicate: %v", got)
	}
}
