package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter"
)

// FlushInterval is how often dirty records are written.
const FlushInterval = time.Second

var metaBucket = []byte("kubefeed-meta")

// File is the embedded file backend (bbolt): one bucket per sink, and a
// meta bucket with each sink's last flush time.
type File struct {
	path      string
	db        *bolt.DB
	log       *zap.Logger
	keepState bool

	mu     sync.Mutex
	stores map[string]*Store

	*committer
}

// ErrCorrupt means the checkpoint file could not be read.
var ErrCorrupt = errors.New("checkpoint unreadable")

// OpenFile opens or creates the file. A file that cannot be read is moved
// aside (path.corrupt-<time>) and a new one is started: the error then
// wraps ErrCorrupt and the returned File is usable, so the caller can log,
// count and emit gap markers instead of crash-looping.
func OpenFile(path string, keepState bool, log *zap.Logger) (*File, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &File{path: path, log: log, keepState: keepState, stores: map[string]*Store{}, committer: newCommitter()}
	db, err := openChecked(path)
	if err == nil {
		f.db = db
		return f, nil
	}
	aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("checkpoint %s: %v; moving it aside: %w", path, err, rerr)
	}
	db, err2 := openChecked(path)
	if err2 != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err2)
	}
	f.db = db
	return f, fmt.Errorf("%w: %s (moved to %s): %v", ErrCorrupt, path, aside, err)
}

func openChecked(path string) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some corrupt pages; a checkpoint must never crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error { return nil })
		})
	}); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Store loads (or creates) the checkpoint of one sink.
func (f *File) Store(sink string) (*Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.stores[sink]; ok {
		return s, nil
	}
	s := newStore()
	s.backend = f
	err := f.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(metaBucket); m != nil {
			if v := m.Get([]byte(sink)); v != nil {
				t, err := time.Parse(time.RFC3339Nano, string(v))
				if err == nil {
					s.restored = t
				}
			}
		}
		b := tx.Bucket([]byte("sink/" + sink))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			key, err := parseKey(string(k))
			if err == nil {
				var r exporter.Record
				if r, err = decodeRecord(v); err == nil {
					s.mem.Put(key, r)
					return nil
				}
			}
			// One unreadable record: forget it (the object then looks new)
			// rather than refuse to start.
			f.log.Error("skipping unreadable checkpoint record", zap.String("sink", sink), zap.ByteString("key", k), zap.Error(err))
			f.skipped.Add(1)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: sink %s: %v", ErrCorrupt, sink, err)
	}
	if s.restored.IsZero() {
		// Nothing was ever flushed for this sink: a first run.
		n := 0
		s.mem.Range(func(exporter.Key, exporter.Record) bool { n++; return false })
		if n > 0 {
			s.restored = time.Unix(0, 0)
		}
	}
	f.stores[sink] = s
	return s, nil
}

// Run flushes every FlushInterval, and at once when Sync asks, until ctx
// ends, then once more.
func (f *File) Run(ctx context.Context) error { return f.loop(ctx, f.Flush, f.log) }

// Flush writes every dirty record of every sink in one transaction.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := time.Now()
	batches := map[string]map[exporter.Key]*exporter.Record{}
	for name, s := range f.stores {
		batches[name] = s.takeDirty()
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
		for name, batch := range batches {
			b, err := tx.CreateBucketIfNotExists([]byte("sink/" + name))
			if err != nil {
				return err
			}
			for k, r := range batch {
				if r == nil {
					if err := b.Delete([]byte(keyString(k))); err != nil {
						return err
					}
					continue
				}
				v, err := encodeRecord(*r, f.keepState)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(keyString(k)), v); err != nil {
					return err
				}
			}
			if err := meta.Put([]byte(name), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for name, batch := range batches {
			f.stores[name].requeue(batch)
		}
		f.flushed(start, err)
		return fmt.Errorf("checkpoint flush: %w", err)
	}
	f.flushed(start, nil)
	return nil
}

// Close flushes and closes the file.
func (f *File) Close() error {
	err := f.Flush()
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	return err
}
