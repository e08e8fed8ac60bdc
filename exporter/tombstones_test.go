package exporter

import "testing"

// A key without a tombstone (most keys) is looked up on every delivery:
// the lookup must not allocate; a key with one gets its own copy.
func TestTombstoneLookup(t *testing.T) {
	ts := &tombstones{m: map[Key]tombstone{}}
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x/~1"}
	if n := testing.AllocsPerRun(100, func() { _ = ts.get(k) }); n != 0 {
		t.Errorf("lookup of a key without a tombstone: %v allocations", n)
	}
	ts.put(k, tombstone{})
	got := ts.get(k)
	if got == nil {
		t.Fatal("tombstone not found")
	}
	if again := ts.get(k); again == got {
		t.Error("two lookups share one copy")
	}
}
