package checkpoint

import (
	"fmt"
	"sync"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/state"
)

// The checkpoint store offers Reserve as the exporter looks it up (an
// interface with Reserve(int)), and Reserve while Put, Delete and
// takeDirty run loses no record and no dirty mark: every key written is
// taken dirty exactly with its last record, and the store ends holding
// exactly the keys put last.
func TestStoreReserveUnderConcurrentWrites(t *testing.T) {
	s := newStore()
	var _ interface{ Reserve(int) } = s
	const writers, perWriter = 4, 500
	taken := map[state.Key]dirty{}
	var takenMu sync.Mutex
	take := func() {
		d := s.takeDirty()
		takenMu.Lock()
		for k, v := range d {
			taken[k] = v
		}
		takenMu.Unlock()
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perWriter; j++ {
				i := w*perWriter + j
				k := cmKey(fmt.Sprintf("n/%d~", i))
				s.Put(k, state.Record{UID: "u", ResourceVersion: fmt.Sprint(i)})
				if i%3 == 0 {
					s.Delete(k)
				}
			}
		}()
	}
	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			default:
			}
			s.Reserve(n%300 + 1)
		}
	}()
	go func() {
		defer bg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			take()
		}
	}()
	wg.Wait()
	close(done)
	bg.Wait()
	take()
	held := 0
	s.Range(func(state.Key, state.Record) bool { held++; return true })
	for i := 0; i < writers*perWriter; i++ {
		k := cmKey(fmt.Sprintf("n/%d~", i))
		r, ok := s.Get(k)
		d, wasDirty := taken[k]
		if !wasDirty {
			t.Fatalf("key %v written but never taken dirty", k)
		}
		if i%3 == 0 {
			if ok || d.rec != nil {
				t.Fatalf("deleted key %v: held %v, last dirty record %+v", k, ok, d.rec)
			}
			continue
		}
		if !ok || r.ResourceVersion != fmt.Sprint(i) || d.rec == nil || d.rec.ResourceVersion != fmt.Sprint(i) {
			t.Fatalf("key %v: held %+v %v, last dirty record %+v", k, r, ok, d.rec)
		}
	}
	if want := writers*perWriter - (writers*perWriter+2)/3; held != want {
		t.Fatalf("store holds %d records, want %d", held, want)
	}
}
