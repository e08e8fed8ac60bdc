package state

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

// storeKey is the i-th of many keys, with '/' and '~' in their names.
func storeKey(i int) Key {
	return Key{GVR: cmGVR, Namespace: fmt.Sprintf("ns/%d", i%7), Name: fmt.Sprintf("n~%d", i)}
}

// Reserve keeps every record, and makes room only when asked for more
// than the map was last made for.
func TestMemoryStoreReserveKeepsRecords(t *testing.T) {
	s := NewMemoryStore()
	for i := 0; i < 10; i++ {
		s.Put(Key{GVR: cmGVR, Namespace: "a/b", Name: "n~" + string(rune('a'+i))}, Record{UID: "u", ResourceVersion: "1"})
	}
	s.Reserve(100)
	if s.reserved != 110 {
		t.Fatalf("reserved %d, want 110 (10 held + 100)", s.reserved)
	}
	s.Reserve(50) // fits what was made
	s.Reserve(0)
	s.Reserve(-5)
	if s.reserved != 110 {
		t.Fatalf("reserved %d after smaller asks, want 110", s.reserved)
	}
	n := 0
	s.Range(func(k Key, r Record) bool { n++; return r.UID == "u" })
	if n != 10 {
		t.Fatalf("%d records after Reserve, want 10", n)
	}
	if _, ok := s.Get(Key{GVR: cmGVR, Namespace: "a/b", Name: "n~c"}); !ok {
		t.Fatal("a record was lost by Reserve")
	}
}

// Reserve rebuilding the map while Put, Delete, Get, Range and
// putIfAbsent run loses no record and brings none back: each goroutine
// owns its keys, so the final contents are known exactly.
func TestMemoryStoreReserveUnderConcurrentUse(t *testing.T) {
	s := NewMemoryStore()
	const owners, perOwner = 4, 400
	for i := 0; i < owners*perOwner; i++ {
		if i%2 == 0 {
			s.Put(storeKey(i), Record{UID: "old", ResourceVersion: "0"})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for o := 0; o < owners; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perOwner; j++ {
				i := o*perOwner + j
				k := storeKey(i)
				switch i % 4 {
				case 0: // present: replaced
					s.Put(k, Record{UID: "u", ResourceVersion: fmt.Sprint(i)})
				case 1: // absent: seeded
					if !PutIfAbsent(s, k, Record{UID: "u", ResourceVersion: fmt.Sprint(i)}) {
						errs <- fmt.Sprintf("putIfAbsent found absent %v", k)
					}
				case 2: // present: deleted
					s.Delete(k)
				case 3: // absent: put then deleted
					s.Put(k, Record{UID: "gone"})
					s.Delete(k)
				}
				if r, ok := s.Get(k); (i%4 < 2) != ok || (ok && r.ResourceVersion != fmt.Sprint(i)) {
					errs <- fmt.Sprintf("Get(%v) = %+v, %v right after its write", k, r, ok)
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for n := 1; n <= 200; n++ {
			s.Reserve(n * 10)
		}
	}()
	go func() {
		defer wg.Done()
		for n := 0; n < 50; n++ {
			s.Range(func(k Key, r Record) bool { return r.UID != "" })
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	held := map[Key]Record{}
	s.Range(func(k Key, r Record) bool { held[k] = r; return true })
	for i := 0; i < owners*perOwner; i++ {
		r, ok := held[storeKey(i)]
		if want := i%4 < 2; ok != want || (ok && r.ResourceVersion != fmt.Sprint(i)) {
			t.Fatalf("key %d: held %v (%+v), want held %v", i, ok, r, want)
		}
	}
	if len(held) != owners*perOwner/2 {
		t.Fatalf("store holds %d records, want %d", len(held), owners*perOwner/2)
	}
}

// Reserve with a count no list can produce neither panics nor allocates
// for it: negative, zero, and one whose sum with the held records
// overflows.
func TestMemoryStoreReserveExtremes(t *testing.T) {
	s := NewMemoryStore()
	s.Put(storeKey(1), Record{UID: "u"})
	for _, n := range []int{math.MinInt, -1, 0, math.MaxInt} {
		s.Reserve(n)
	}
	if _, ok := s.Get(storeKey(1)); !ok || s.reserved != 0 {
		t.Fatalf("record kept %v, reserved %d; want true, 0", ok, s.reserved)
	}
}

// A first list of a few objects (a namespace or resource that appeared
// later, or one scope of several routed to a sink) must not copy a large
// delivered state: Reserve rebuilds the map under the store's write lock,
// so every worker of the sink waits for the copy (about a second for a
// million records on this machine, for Reserve(1)). Reserve copies at
// most as many records as it makes room for.
func TestReserveSmallListDoesNotCopyLargeState(t *testing.T) {
	s := NewMemoryStore()
	for i := 0; i < 10000; i++ {
		s.Put(storeKey(i), Record{UID: "u"})
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
	if _, ok := s.Get(storeKey(9999)); !ok {
		t.Fatal("a record was lost")
	}
}
