package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// catchUpTimeout bounds how long Lead waits for the watch to reach the
// bucket's last write before it reads the bucket again instead.
var catchUpTimeout = 10 * time.Second

// Follower keeps the stores of a warm standby current with the bucket:
// the leader writes it, and a watch applies every write to these stores
// as it is made (records put and deleted, flush times). Nothing is
// written while following. Lead catches up with the bucket, stops
// following and gives the stores to the KV, which flushes them from then
// on.
type Follower struct {
	b      *KV
	stores map[string]*Store

	rev    atomic.Uint64 // the bucket revision last applied
	loaded atomic.Bool   // every value current when the watch began is applied

	mu      sync.Mutex
	why     string // why it does not follow, or ""
	running bool   // Run began
	stopped bool   // Lead stopped it (or it never runs)
	stop    context.CancelFunc
	done    chan struct{} // closed when Run returns
}

// Follow makes empty stores for sinks that Run fills and keeps current.
func (b *KV) Follow(sinks []string) *Follower {
	f := &Follower{b: b, stores: map[string]*Store{}, why: "not started", done: make(chan struct{})}
	for _, name := range sinks {
		s := newStore()
		s.backend = b
		f.stores[name] = s
	}
	return f
}

// Store is the followed store of sink (nil for a sink not followed).
func (f *Follower) Store(sink string) *Store { return f.stores[sink] }

// Following reports whether the stores hold the bucket as it is (every
// value loaded, the watch running), or why not.
func (f *Follower) Following() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.why != "" {
		return false, f.why
	}
	return true, ""
}

func (f *Follower) setWhy(why string) {
	f.mu.Lock()
	f.why = why
	f.mu.Unlock()
}

// Run follows the bucket until ctx ends or Lead stops it. A watch that
// cannot be made or ends is made again after a second, and reloads every
// record (one deleted meanwhile is gone from its result).
func (f *Follower) Run(ctx context.Context) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	ctx, stop := context.WithCancel(ctx)
	f.running, f.stop = true, stop
	f.mu.Unlock()
	defer close(f.done)
	defer stop()
	for ctx.Err() == nil {
		if err := f.follow(ctx); err != nil && ctx.Err() == nil {
			f.setWhy("checkpoint not followed: " + err.Error())
			f.b.log.Warn("following the checkpoint; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// follow loads every current value and applies writes until ctx ends or
// the watch does.
func (f *Follower) follow(ctx context.Context) error {
	w, err := f.b.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	f.loaded.Store(false)
	for _, s := range f.stores {
		s.reset()
	}
	for e := range w.Updates() {
		if e == nil {
			f.loaded.Store(true)
			f.setWhy("")
			f.b.log.Info("following the checkpoint", zap.Uint64("revision", f.rev.Load()))
			continue
		}
		f.b.applyEntry(f.stores, e)
		f.rev.Store(e.Revision())
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("the watch ended")
}

// Lead stops following once the stores hold every write the bucket has
// now, and makes them the KV's: flushed from now on. When the watch does
// not catch up within catchUpTimeout (it is down, far behind, or was
// never run), the stores are read again from the bucket. Call it once.
func (f *Follower) Lead(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	last, err := f.lastRevision(cctx)
	caught := err == nil && f.waitFor(cctx, last)
	cancel()
	f.mu.Lock()
	f.stopped = true
	stop, running := f.stop, f.running
	f.mu.Unlock()
	if running {
		stop()
		<-f.done
	}
	if !caught {
		if err == nil {
			err = fmt.Errorf("at revision %d of %d after %s", f.rev.Load(), last, catchUpTimeout)
		}
		f.b.log.Warn("the followed checkpoint is behind; reading it again", zap.Error(err))
		for name, s := range f.stores {
			s.reset()
			if err := f.b.loadInto(ctx, name, s); err != nil {
				return err
			}
		}
	}
	f.b.mu.Lock()
	for name, s := range f.stores {
		f.b.stores[name] = s
	}
	f.b.mu.Unlock()
	f.setWhy("leading")
	return nil
}

// lastRevision is the bucket's last revision now.
func (f *Follower) lastRevision(ctx context.Context) (uint64, error) {
	st, err := f.b.kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, errors.New("bucket status without stream info")
	}
	return bs.StreamInfo().State.LastSeq, nil
}

// waitFor reports whether every value is loaded and the revision rev
// applied before ctx ends.
func (f *Follower) waitFor(ctx context.Context, rev uint64) bool {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if f.loaded.Load() && f.rev.Load() >= rev {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}
