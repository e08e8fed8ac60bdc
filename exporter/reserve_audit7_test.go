package exporter

import (
	"fmt"
	"math"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func audit7Key(i int) Key {
	return Key{GVR: cmRes.GVR, Namespace: fmt.Sprintf("ns/%d", i%7), Name: fmt.Sprintf("n~%d", i)}
}

// Reserve rebuilding the map while Put, Delete, Get, Range and
// putIfAbsent run loses no record and brings none back: each goroutine
// owns its keys, so the final contents are known exactly.
func TestMemoryStoreReserveUnderConcurrentUseAudit7(t *testing.T) {
	s := NewMemoryStore()
	const owners, perOwner = 4, 400
	for i := 0; i < owners*perOwner; i++ {
		if i%2 == 0 {
			s.Put(audit7Key(i), Record{UID: "old", ResourceVersion: "0"})
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
				k := audit7Key(i)
				switch i % 4 {
				case 0: // present: replaced
					s.Put(k, Record{UID: "u", ResourceVersion: fmt.Sprint(i)})
				case 1: // absent: seeded
					if !putIfAbsent(s, k, Record{UID: "u", ResourceVersion: fmt.Sprint(i)}) {
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
		r, ok := held[audit7Key(i)]
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
func TestMemoryStoreReserveExtremesAudit7(t *testing.T) {
	s := NewMemoryStore()
	s.Put(audit7Key(1), Record{UID: "u"})
	for _, n := range []int{math.MinInt, -1, 0, math.MaxInt} {
		s.Reserve(n)
	}
	if _, ok := s.Get(audit7Key(1)); !ok || s.reserved != 0 {
		t.Fatalf("record kept %v, reserved %d; want true, 0", ok, s.reserved)
	}
}

func audit7Page(cont string, names ...string) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetContinue(cont)
	for _, n := range names {
		u := cm("ns", n, nil)
		u.SetResourceVersion("1")
		l.Items = append(l.Items, *u)
	}
	return l
}

func audit7KeyOf(u *unstructured.Unstructured) Key {
	return Key{GVR: cmRes.GVR, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// The count of a first list is what the completed cycle listed: a paged
// list whose continue token expired and restarted counts only the
// restart; a continued page of a cycle not seen starting counts from
// there; a superseded cycle's end reports 0; deletions in a stream never
// make it negative; a stream's end taken back (undo) and streamed again
// counts the new stream only; and once the first list completed, every
// later cycle is a relist (which reserves nothing).
func TestListCyclesCountAudit7(t *testing.T) {
	noGap := func() *gap { return &gap{} }
	t.Run("expired continue token", func(t *testing.T) {
		var c listCycles
		if r, n := c.page(metav1.ListOptions{}, audit7Page("tok", "a", "b", "c"), audit7KeyOf, noGap); r || n != 0 {
			t.Fatalf("first page: %v %d", r, n)
		}
		// The token expired: the pager lists again from the start.
		r, n := c.page(metav1.ListOptions{}, audit7Page("", "a", "d"), audit7KeyOf, noGap)
		if r || n != 2 {
			t.Fatalf("restarted list: relisted %v, n %d; want false, 2", r, n)
		}
		if r, n := c.page(metav1.ListOptions{}, audit7Page("", "a"), audit7KeyOf, noGap); !r || n != 1 {
			t.Fatalf("next list: relisted %v, n %d; want a relist of 1", r, n)
		}
	})
	t.Run("continued page of an unseen start", func(t *testing.T) {
		var c listCycles
		if r, n := c.page(metav1.ListOptions{Continue: "tok"}, audit7Page("", "x", "y"), audit7KeyOf, noGap); r || n != 2 {
			t.Fatalf("relisted %v, n %d; want false, 2", r, n)
		}
	})
	t.Run("superseded cycle", func(t *testing.T) {
		var c listCycles
		g1 := c.begin()
		c.listed(g1, audit7Key(1), "1")
		g2 := c.begin()
		c.listed(g1, audit7Key(2), "1") // late, of the superseded cycle
		c.listed(g2, audit7Key(3), "1")
		if r, n := c.end(g1, noGap); r || n != 0 {
			t.Fatalf("superseded end: %v %d; want false, 0", r, n)
		}
		if r, n := c.end(g2, noGap); r || n != 1 {
			t.Fatalf("current end: %v %d; want false, 1", r, n)
		}
	})
	t.Run("deletions exceed additions", func(t *testing.T) {
		var c listCycles
		g := c.begin()
		c.listed(g, audit7Key(1), "")
		c.listed(g, audit7Key(2), "")
		c.listed(g, audit7Key(3), "1")
		if r, n := c.end(g, noGap); r || n != 0 {
			t.Fatalf("relisted %v, n %d; want false, 0", r, n)
		}
	})
	t.Run("stream undone then streamed again", func(t *testing.T) {
		var c listCycles
		g := c.begin()
		for i := 0; i < 5; i++ {
			c.listed(g, audit7Key(i), "1")
		}
		r, n, undo := c.endStream(g, noGap)
		if r || n != 5 {
			t.Fatalf("stream end: %v %d", r, n)
		}
		undo()
		g2 := c.begin()
		c.listed(g2, audit7Key(9), "1")
		c.listed(g2, audit7Key(8), "1")
		if r, n, _ := c.endStream(g2, noGap); r || n != 2 {
			t.Fatalf("stream after undo: relisted %v, n %d; want false, 2", r, n)
		}
		g3 := c.begin()
		c.listed(g3, audit7Key(9), "2")
		if r, n, _ := c.endStream(g3, noGap); !r || n != 1 {
			t.Fatalf("next stream: relisted %v, n %d; want a relist of 1", r, n)
		}
	})
}

// listEnded of a first list reserves on every routed store that can, and
// only there; with no table it does nothing; a superseded cycle's end (0)
// changes nothing; and it runs while routes are swapped concurrently.
func TestListEndedReservesPerRouteAudit7(t *testing.T) {
	var bare scope // no table
	bare.listEnded(false, 10)

	st1, st2 := NewMemoryStore(), NewMemoryStore()
	plainStore := &audit7PlainStore{MemoryStore: NewMemoryStore()}
	s := &scope{}
	s.tab.Store(&scopeTable{routes: []route{{sink: &sinkRunner{store: st1}}, {sink: &sinkRunner{store: plainStore}}}})
	s.listEnded(false, 0)
	if st1.reserved != 0 {
		t.Fatalf("an end with nothing listed reserved %d", st1.reserved)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			s.update(func(t *scopeTable) {
				if i%2 == 0 {
					t.routes = append(t.routes, route{sink: &sinkRunner{store: st2}})
				} else {
					t.routes = t.routes[:2]
				}
			})
		}
	}()
	for i := 1; i <= 200; i++ {
		s.listEnded(false, i)
	}
	wg.Wait()
	s.update(func(t *scopeTable) { t.routes = append(t.routes, route{sink: &sinkRunner{store: st2}}) })
	s.listEnded(false, 300)
	if st1.reserved != 300 || st2.reserved != 300 {
		t.Fatalf("reserved %d and %d, want 300 each", st1.reserved, st2.reserved)
	}
	if plainStore.reserved != 0 {
		t.Fatalf("a store without Reserve was reserved through its embedded map")
	}
}

// audit7PlainStore is a Store that hides MemoryStore's Reserve (a user's
// store without it).
type audit7PlainStore struct{ *MemoryStore }

func (p *audit7PlainStore) Reserve() {}
