package state

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Record is what was last delivered to a sink for one object.
type Record struct {
	UID             string
	ResourceVersion string
	// Object is the delivered state (shared with the informer cache; never
	// modified). Nil when only uid and version are known (a checkpoint that
	// keeps no state), in which case a change is sent without a patch.
	Object *unstructured.Unstructured
	// Scope names the informer scope the object was delivered from, so
	// that a restart with a changed config can tell objects that left the
	// scope (forgotten) from deleted ones.
	Scope string
	// Redact, when set, is the redaction of the rule that delivered the
	// object: what a checkpoint keeps at rest is Redact.Object(Object),
	// never the raw state (SPEC: nothing redacted rests anywhere).
	Redact *filters.Redactor
	// Rule is the index+1 of the config rule that rendered the delivered
	// state (0: unknown, e.g. restored from a checkpoint). A deletion is
	// rendered by that rule, so it is redacted as the object was.
	Rule int
	// AtRest marks a state restored from a checkpoint: it is what the sink
	// was sent, redacted. A diff against it compares the redacted current
	// state, so redacted paths do not show as changed.
	AtRest bool
	// Provisional marks a record written before its added event was sent
	// (with a checkpoint): the sink may or may not hold the object. After
	// a crash it is offered again as added, or retracted when gone, so a
	// deletion made while kubefeed was down is never lost.
	Provisional bool
	// Deleting marks a record written before the object's deletion was
	// sent (with a checkpoint): ResourceVersion and Object are the final
	// state that deletion carries. After a crash the same deletion is sent
	// again, with the same id, object and time, rather than one inferred
	// from the state delivered before it.
	Deleting bool
	// Sent, on a record written before a change was sent (Provisional,
	// Deleting, or the delivered state ahead of a modification), is what
	// that change was: sent again after a crash, it is byte for byte the
	// same event.
	Sent *Sent
}

// Sent is what a record written ahead of a send keeps of the change: its
// version (a modification's new one; the record's own for added and
// deleted), when kubefeed first observed it, and its recovered mark.
type Sent struct {
	ResourceVersion string
	Time            time.Time
	Recovered       bool
	// Patch and ChangedPaths, of a modification, are what it carried
	// (redacted): a restart cannot diff again what the sink was sent, its
	// base rests redacted, where a changed value hides behind a marker.
	Patch        []jsonpatch.Op
	ChangedPaths []string
}

// SentAs reports the change a record was written ahead of, when it is the
// version rv of its uid (and a deletion exactly when deleted).
func (r *Record) SentAs(uid, rv string, deleted bool) (*Sent, bool) {
	if r == nil || r.Sent == nil || r.UID != uid || r.Sent.ResourceVersion != rv || r.Deleting != deleted {
		return nil, false
	}
	return r.Sent, true
}

// Syncer is implemented by write-behind stores: Sync returns once what was
// Put is durable, or with an error when writing failed or ctx ended first
// (what was Put stays pending and is written later). The exporter calls it
// after an object appeared, vanished or changed uid, so that a restart
// never compares a new incarnation with an old one.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Flusher is implemented by stores that write behind (checkpoints): Flush
// writes now, and returns when ctx ends at the latest.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Restorer is implemented by stores that may hold the state of a previous
// run (checkpoints). Restored returns when that run last saved it.
type Restorer interface {
	Restored() (time.Time, bool)
}

// Store keeps the delivered state of one sink. Implementations must be safe
// for concurrent use; the in-memory one is the default, and restart
// checkpoints implement it over a persistent backend.
type Store interface {
	Get(k Key) (Record, bool)
	Put(k Key, r Record)
	Delete(k Key)
	// Range calls f for every record until f returns false.
	Range(f func(Key, Record) bool)
}

// MemoryStore is a Store in a map.
type MemoryStore struct {
	mu sync.RWMutex
	m  map[Key]Record
	// reserved is the size the map was last made for (Reserve).
	reserved int
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[Key]Record{}} }

// Get returns the record of k.
func (s *MemoryStore) Get(k Key) (Record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.m[k]
	return r, ok
}

// Put sets the record of k.
func (s *MemoryStore) Put(k Key, r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = r
}

// Reserve makes room for n more records than the store holds, so that a
// sink filling its delivered state from a first list of n objects does
// not grow the map (rehashing every record it holds) as it goes. It
// copies the map under the write lock, so it does so only for at least as
// many records as the map holds: a few more (a small scope's first list)
// grow the map as they come instead of every worker of the sink waiting
// for a copy of everything.
func (s *MemoryStore) Reserve(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := len(s.m) + n
	if n <= 0 || n < len(s.m) || want <= s.reserved {
		return
	}
	m := make(map[Key]Record, want)
	for k, r := range s.m {
		m[k] = r
	}
	s.m, s.reserved = m, want
}

// Capacity is the number of records the map was last made for by
// Reserve (0: never).
func (s *MemoryStore) Capacity() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reserved
}

// Len is the number of records held.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Delete forgets k.
func (s *MemoryStore) Delete(k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

// Range iterates over a snapshot of the records.
func (s *MemoryStore) Range(f func(Key, Record) bool) {
	s.mu.RLock()
	keys := make([]Key, 0, len(s.m))
	recs := make([]Record, 0, len(s.m))
	for k, r := range s.m {
		keys = append(keys, k)
		recs = append(recs, r)
	}
	s.mu.RUnlock()
	for i := range keys {
		if !f(keys[i], recs[i]) {
			return
		}
	}
}

// PutIfAbsent seeds k, reporting whether it was absent.
func PutIfAbsent(s Store, k Key, r Record) bool {
	if ms, ok := s.(*MemoryStore); ok {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if _, ok := ms.m[k]; ok {
			return false
		}
		ms.m[k] = r
		return true
	}
	if _, ok := s.Get(k); ok {
		return false
	}
	s.Put(k, r)
	return true
}
