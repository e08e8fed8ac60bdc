package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
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

// ErrLocked means another process (another kubefeed) holds the checkpoint
// file: the file is left as it is.
var ErrLocked = errors.New("locked by another process")

// lockTimeout is how long OpenFile waits for another process to release
// the file.
var lockTimeout = 5 * time.Second

// OpenFile opens or creates the file (0600; its directory is created
// 0700 if missing). A file another process holds is an error wrapping
// ErrLocked. A file that cannot be read is moved aside
// (path.corrupt-<time>, 0600) and a new one is started: the error then
// wraps ErrCorrupt and the returned File is usable, so the caller can log,
// count and emit gap markers instead of crash-looping.
func OpenFile(path string, keepState bool, log *zap.Logger) (*File, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint directory: %w", err)
	}
	f := &File{path: path, log: log, keepState: keepState, stores: map[string]*Store{}, committer: newCommitter()}
	db, err := openChecked(path)
	if err == nil {
		f.db = db
		return f, nil
	}
	if errors.Is(err, ErrLocked) {
		return nil, err
	}
	aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("checkpoint %s: %v; moving it aside: %w", path, err, rerr)
	}
	if cerr := os.Chmod(aside, 0o600); cerr != nil {
		log.Warn("making the moved-aside checkpoint private", zap.String("path", aside), zap.Error(cerr))
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
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("checkpoint file %s is %w (another kubefeed on the same file?); waited %s", path, ErrLocked, lockTimeout)
	}
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
				var r state.Record
				var legacy bool
				if r, legacy, err = decodeRecord(v); err == nil {
					s.load(key, r, legacy)
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
		s.mem.Range(func(state.Key, state.Record) bool { n++; return false })
		if n > 0 {
			s.restored = time.Unix(0, 0)
		}
	}
	f.stores[sink] = s
	return s, nil
}

// Run flushes every FlushInterval, and at once when Sync asks, until ctx
// ends; Close writes what is left.
func (f *File) Run(ctx context.Context) error { return f.loop(ctx, f.Flush, f.log) }

// boltPermanent tells the bbolt errors no retry can fix.
func boltPermanent(err error) bool {
	return errors.Is(err, bolt.ErrKeyTooLarge) || errors.Is(err, bolt.ErrValueTooLarge) ||
		errors.Is(err, bolt.ErrKeyRequired) || errors.Is(err, bolt.ErrIncompatibleValue)
}

// Flush writes every dirty record of every sink in one transaction. A
// record bbolt refuses is stored shrunk or skipped (see write); any other
// failure rolls back and keeps every record dirty. bbolt takes no
// context: ctx is only checked before the transaction.
func (f *File) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, start := f.begin()
	if err := ctx.Err(); err != nil {
		f.flushed(seq, start, err)
		return fmt.Errorf("checkpoint flush: %w", err)
	}
	batches := map[string]map[state.Key]dirty{}
	stripped := 0 // legacy records written back without their raw state
	for name, s := range f.stores {
		batches[name] = s.takeDirty()
		for _, d := range batches[name] {
			if d.strip {
				stripped++
			}
		}
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
			for k, d := range batch {
				key := []byte(keyString(k))
				if d.rec == nil {
					if err := b.Delete(key); err != nil && !boltPermanent(err) {
						return err
					}
					f.unnote(name + " " + keyString(k))
					continue
				}
				w := recordWriter{put: func(v []byte) error { return b.Put(key, v) }, permanent: boltPermanent}
				if err := f.write(w, f.log, name, k, d, f.keepState); err != nil {
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
		f.flushed(seq, start, err)
		return fmt.Errorf("checkpoint flush: %w", err)
	}
	f.flushed(seq, start, nil)
	if stripped > 0 {
		if err := f.compact(); err != nil {
			return err
		}
		f.log.Info("checkpoint rewritten without the unredacted state of an older version", zap.Int("records", stripped))
	}
	return nil
}

// Close flushes (within closeTimeout) and closes the file.
func (f *File) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := f.Flush(ctx)
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	return err
}
