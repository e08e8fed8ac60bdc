package checkpoint

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// Share points a settled, clean record at the same version held elsewhere
// and leaves it clean; it leaves alone a dirty or legacy record, another
// version or incarnation, and a record written ahead of a send.
func TestStoreShareOnlyTakesTheSameSettledVersion(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"uid": "u", "resourceVersion": "5"}}}
	decoded := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"uid": "u", "resourceVersion": "5"}}}
	k := state.Key{Namespace: "ns", Name: "x"}
	for _, tc := range []struct {
		name  string
		rec   state.Record
		dirty bool
		want  bool
	}{
		{name: "settled", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded, AtRest: true}, want: true},
		{name: "acknowledged (Sent names its version)", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded, Sent: &state.Sent{ResourceVersion: "5"}}, want: true},
		{name: "written ahead of a modification", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded, Sent: &state.Sent{ResourceVersion: "6"}}},
		{name: "provisional", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded, Provisional: true}},
		{name: "deleting", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded, Deleting: true}},
		{name: "another version", rec: state.Record{UID: "u", ResourceVersion: "4", Object: decoded}},
		{name: "another incarnation", rec: state.Record{UID: "v", ResourceVersion: "5", Object: decoded}},
		{name: "dirty", rec: state.Record{UID: "u", ResourceVersion: "5", Object: decoded}, dirty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore()
			s.load(k, tc.rec, false)
			if tc.dirty {
				s.Put(k, tc.rec)
			}
			if got := s.Share(k, obj); got != tc.want {
				t.Fatalf("Share = %v, want %v", got, tc.want)
			}
			r, _ := s.Get(k)
			if tc.want && (r.Object != obj || r.AtRest || s.dirty[k]) {
				t.Errorf("shared record: same object %v, at rest %v, dirty %v", r.Object == obj, r.AtRest, s.dirty[k])
			}
			if !tc.want && r.Object != decoded {
				t.Error("a record Share refused changed")
			}
		})
	}
	s := newStore()
	s.load(k, state.Record{UID: "u", ResourceVersion: "5", Object: decoded}, true)
	if s.Share(k, obj) {
		t.Error("a legacy record was shared")
	}
}

// A record that rests redacted (its rule redacts /data/password) is offered
// the same version's raw object. Whatever the caller vouches, sharing must
// not change what the checkpoint keeps: once shared, the record (Redact nil,
// as decoded) is the base a modification writes ahead (plan.Ahead copies
// it), and encodeRecord then writes the raw password at rest.
func TestStoreShareNeverPutsMoreAtRestThanTheRecordHeld(t *testing.T) {
	ps, err := filters.ParsePatterns([]string{"/data/password"})
	if err != nil {
		t.Fatal(err)
	}
	raw := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"namespace": "a", "name": "x", "uid": "u", "resourceVersion": "5"},
			"data":     map[string]any{"password": "hunter2", "v": "1"}}}
	}
	// What the leader wrote: the state as its rule redacts it.
	b, err := encodeRecord(state.Record{UID: "u", ResourceVersion: "5", Scope: "s", Object: raw(), Redact: filters.NewRedactor(ps, nil)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mustDecodeState(t, b)), "hunter2") {
		t.Fatal("the leader's record rests unredacted")
	}
	rested, legacy, err := decodeRecord(b)
	if err != nil || legacy {
		t.Fatalf("decode: %v, legacy %v", err, legacy)
	}
	k := state.Key{Namespace: "a", Name: "x"}
	s := newStore()
	s.load(k, rested, false)
	s.Share(k, raw())
	// A modification after promotion: written ahead from the record held.
	last, _ := s.Get(k)
	rec := last
	rec.Sent = &state.Sent{ResourceVersion: "6", Patch: []jsonpatch.Op{}}
	s.Put(k, rec)
	got, _ := s.Get(k)
	out, err := encodeRecord(got, true)
	if err != nil {
		t.Fatal(err)
	}
	if st := mustDecodeState(t, out); strings.Contains(string(st), "hunter2") {
		t.Errorf("after Share, the record written ahead rests unredacted: %s", st)
	}
}

// mustDecodeState returns the JSON of a stored record's state.
func mustDecodeState(t *testing.T, b []byte) []byte {
	t.Helper()
	r, _, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Object == nil {
		return nil
	}
	j, err := r.Object.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return j
}
