package checkpoint

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Store is one sink's checkpointed delivered state: reads from memory,
// writes recorded as dirty until the backend's next flush.
type Store struct {
	backend backend
	mem     *state.MemoryStore
	mu      sync.Mutex // orders Put and Delete with takeDirty
	dirty   map[state.Key]bool
	// legacy holds the keys restored from records of an older format,
	// whose state was stored unredacted: until they are Put again (with
	// their rule's redaction), they are written back without state.
	legacy   map[state.Key]bool
	restored time.Time // when the previous run last flushed; zero: fresh
}

var (
	_ state.Store    = (*Store)(nil)
	_ state.Restorer = (*Store)(nil)
	_ state.Flusher  = (*Store)(nil)
	_ state.Syncer   = (*Store)(nil)
)

// backend is where stores are written: File or KV.
type backend interface {
	Flush(ctx context.Context) error
	Sync(ctx context.Context) error
}

// dirty is a record to write; rec nil: delete it. strip: write it
// without its state.
type dirty struct {
	rec   *state.Record
	strip bool
}

// Sync returns once everything Put so far is written (group commit), or
// with an error when the flush failed or ctx ended first.
func (s *Store) Sync(ctx context.Context) error {
	if s.backend == nil {
		return nil
	}
	return s.backend.Sync(ctx)
}

// Flush writes the backend now.
func (s *Store) Flush(ctx context.Context) error {
	if s.backend == nil {
		return nil
	}
	return s.backend.Flush(ctx)
}

func newStore() *Store {
	return &Store{mem: state.NewMemoryStore(), dirty: map[state.Key]bool{}, legacy: map[state.Key]bool{}}
}

// Get returns the record of k.
func (s *Store) Get(k state.Key) (state.Record, bool) { return s.mem.Get(k) }

// Put records an acknowledged delivery, or a record written ahead of a
// send. A record restored from a legacy one whose state is Put again
// unchanged (a record written ahead carries the delivered state on) is
// still written without it: that state may hold what its rule redacts.
func (s *Store) Put(k state.Key, r state.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legacy[k] {
		if old, ok := s.mem.Get(k); !ok || old.Object != r.Object {
			delete(s.legacy, k)
		}
	}
	s.mem.Put(k, r)
	s.dirty[k] = true
}

// Share makes k's record point at obj, the same version of the object
// held elsewhere (a warm standby's cache), instead of the copy decoded
// from the checkpoint: a standby that follows the checkpoint then holds
// each object once. Only a settled record (obj's uid and version, not
// written ahead of a send, not provisional or being deleted) that is
// neither dirty nor legacy changes, and it stays clean; the caller
// vouches that obj's content is what rests (its rule redacts nothing),
// and a record at rest whose content differs from obj (compared as JSON)
// is refused all the same.
func (s *Store) Share(k state.Key, obj *unstructured.Unstructured) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty[k] || s.legacy[k] {
		return false
	}
	r, ok := s.mem.Get(k)
	rv := obj.GetResourceVersion()
	if !ok || r.Object == obj || r.UID != string(obj.GetUID()) || r.ResourceVersion != rv || r.Provisional || r.Deleting ||
		(r.Sent != nil && r.Sent.ResourceVersion != rv) {
		return false
	}
	if r.AtRest && r.Object != nil && !jsonpatch.Equal(r.Object.Object, obj.Object) {
		// It rests as something else than obj (redacted): sharing would
		// put more at rest the next time it is written.
		return false
	}
	r.Object, r.AtRest = obj, false
	s.mem.Put(k, r)
	return true
}

// Delete forgets k.
func (s *Store) Delete(k state.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.Delete(k)
	s.dirty[k] = true
	delete(s.legacy, k)
}

// Range iterates over the records.
func (s *Store) Range(f func(state.Key, state.Record) bool) { s.mem.Range(f) }

// Reserve makes room in the delivered state for n more records (a first
// list about to be recorded).
func (s *Store) Reserve(n int) { s.mem.Reserve(n) }

// Restored reports when the previous run last wrote this checkpoint, if it
// did.
func (s *Store) Restored() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored, !s.restored.IsZero()
}

// load adds a record read from the backend, or replaces it; a legacy one
// is rewritten at the next flush.
func (s *Store) load(k state.Key, r state.Record, legacy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.Put(k, r)
	if legacy {
		s.legacy[k] = true
		s.dirty[k] = true
		return
	}
	// The backend holds it as it is now (a follower applies the leader's
	// rewrite of a legacy record): nothing left to rewrite.
	delete(s.legacy, k)
	delete(s.dirty, k)
}

// unload forgets a record the bucket no longer holds (followed from the
// leader's writes).
func (s *Store) unload(k state.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.Delete(k)
	delete(s.legacy, k)
	delete(s.dirty, k)
}

// setRestored notes when the writer of the checkpoint last flushed it.
func (s *Store) setRestored(t time.Time) {
	s.mu.Lock()
	s.restored = t
	s.mu.Unlock()
}

// RestoredAs makes the store report t as its last flush (Restored): a
// store seeded from another's records (a shard layout before) is restored
// as of that one's flush, so that what changed since is recovered after a
// restart gap marker.
func (s *Store) RestoredAs(t time.Time) { s.setRestored(t) }

// reset forgets every record, before the bucket is read again. Nothing
// else may use the store meanwhile.
func (s *Store) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem = state.NewMemoryStore()
	s.dirty = map[state.Key]bool{}
	s.legacy = map[state.Key]bool{}
	s.restored = time.Time{}
}

// takeDirty returns the dirty keys with their current records.
func (s *Store) takeDirty() map[state.Key]dirty {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[state.Key]dirty, len(s.dirty))
	for k := range s.dirty {
		d := dirty{strip: s.legacy[k]}
		if r, ok := s.mem.Get(k); ok {
			d.rec = &r
		}
		out[k] = d
	}
	s.dirty = map[state.Key]bool{}
	return out
}

// requeue marks keys dirty again after a failed flush.
func (s *Store) requeue(keys map[state.Key]dirty) {
	s.mu.Lock()
	for k := range keys {
		s.dirty[k] = true
	}
	s.mu.Unlock()
}
