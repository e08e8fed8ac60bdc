package exporter

import "testing"

// A first list of a few objects (a namespace or resource that appeared
// later, or one scope of several routed to a sink) must not copy a large
// delivered state: Reserve rebuilds the map under the store's write lock,
// so every worker of the sink waits for the copy (about a second for a
// million records on this machine, for Reserve(1)). Reserve copies at
// most as many records as it makes room for.
func TestReserveSmallListDoesNotCopyLargeStateAudit7(t *testing.T) {
	s := NewMemoryStore()
	for i := 0; i < 10000; i++ {
		s.Put(audit7Key(i), Record{UID: "u"})
	}
	s.Reserve(1)
	s.Reserve(9999)
	if s.reserved != 0 {
		t.Fatalf("Reserve of up to 9,999 more rebuilt a map of 10,000 records (made for %d)", s.reserved)
	}
	s.Reserve(10000) // as many as it holds: worth the copy
	if s.reserved != 20000 {
		t.Fatalf("Reserve(10000) on 10,000 records made the map for %d, want 20000", s.reserved)
	}
	if _, ok := s.Get(audit7Key(9999)); !ok {
		t.Fatal("a record was lost")
	}
}
