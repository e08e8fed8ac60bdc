package checkpoint

import (
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter"
)

// Store is one sink's checkpointed delivered state: reads from memory,
// writes recorded as dirty until the backend's next flush.
type Store struct {
	backend  backend
	mem      *exporter.MemoryStore
	mu       sync.Mutex
	dirty    map[exporter.Key]bool
	restored time.Time // when the previous run last flushed; zero: fresh
}

var (
	_ exporter.Store    = (*Store)(nil)
	_ exporter.Restorer = (*Store)(nil)
	_ exporter.Flusher  = (*Store)(nil)
)

// backend is where stores are written: File or KV.
type backend interface {
	Flush() error
	Sync()
}

// Sync returns once everything Put so far is written (group commit).
func (s *Store) Sync() {
	if s.backend != nil {
		s.backend.Sync()
	}
}

// Flush writes the backend now.
func (s *Store) Flush() error {
	if s.backend == nil {
		return nil
	}
	return s.backend.Flush()
}

func newStore() *Store {
	return &Store{mem: exporter.NewMemoryStore(), dirty: map[exporter.Key]bool{}}
}

// Get returns the record of k.
func (s *Store) Get(k exporter.Key) (exporter.Record, bool) { return s.mem.Get(k) }

// Put records an acknowledged delivery.
func (s *Store) Put(k exporter.Key, r exporter.Record) {
	s.mem.Put(k, r)
	s.markDirty(k)
}

// Delete forgets k.
func (s *Store) Delete(k exporter.Key) {
	s.mem.Delete(k)
	s.markDirty(k)
}

// Range iterates over the records.
func (s *Store) Range(f func(exporter.Key, exporter.Record) bool) { s.mem.Range(f) }

// Restored reports when the previous run last wrote this checkpoint, if it
// did.
func (s *Store) Restored() (time.Time, bool) { return s.restored, !s.restored.IsZero() }

func (s *Store) markDirty(k exporter.Key) {
	s.mu.Lock()
	s.dirty[k] = true
	s.mu.Unlock()
}

// takeDirty returns the dirty keys with their current records (nil: deleted).
func (s *Store) takeDirty() map[exporter.Key]*exporter.Record {
	s.mu.Lock()
	keys := s.dirty
	s.dirty = map[exporter.Key]bool{}
	s.mu.Unlock()
	out := make(map[exporter.Key]*exporter.Record, len(keys))
	for k := range keys {
		if r, ok := s.mem.Get(k); ok {
			out[k] = &r
		} else {
			out[k] = nil
		}
	}
	return out
}

// requeue marks keys dirty again after a failed flush.
func (s *Store) requeue(keys map[exporter.Key]*exporter.Record) {
	s.mu.Lock()
	for k := range keys {
		s.dirty[k] = true
	}
	s.mu.Unlock()
}
