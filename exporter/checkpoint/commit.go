package checkpoint

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// committer is what both backends share: the flush loop, group commit for
// Sync, and flush statistics.
type committer struct {
	wake    chan struct{}
	genMu   sync.Mutex
	genCond *sync.Cond
	gen     uint64 // completed flushes

	flushes, flushErrors, skipped atomic.Int64
	lastFlush, lastDuration       atomic.Int64 // unix nanos, nanos
}

func newCommitter() *committer {
	c := &committer{wake: make(chan struct{}, 1)}
	c.genCond = sync.NewCond(&c.genMu)
	return c
}

// loop flushes every FlushInterval, and at once when Sync asks, until ctx
// ends, then once more.
func (c *committer) loop(ctx context.Context, flush func() error, log *zap.Logger) error {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return flush()
		case <-c.wake:
			// Let concurrent waiters join this commit.
			time.Sleep(2 * time.Millisecond)
		case <-t.C:
		}
		if err := flush(); err != nil {
			log.Error("checkpoint flush failed; retrying", zap.Error(err))
		}
	}
}

// flushed records a flush that began at start.
func (c *committer) flushed(start time.Time, err error) {
	c.flushes.Add(1)
	c.lastDuration.Store(int64(time.Since(start)))
	if err != nil {
		c.flushErrors.Add(1)
		return
	}
	c.lastFlush.Store(time.Now().UnixNano())
	c.genMu.Lock()
	c.gen++
	c.genCond.Broadcast()
	c.genMu.Unlock()
}

// Sync waits until a flush that started after the call has completed, so
// that what was Put before is written. Concurrent callers share commits.
func (c *committer) Sync() {
	c.genMu.Lock()
	target := c.gen + 2 // a flush in progress may have missed our writes
	c.genMu.Unlock()
	for {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		c.genMu.Lock()
		if c.gen >= target {
			c.genMu.Unlock()
			return
		}
		// Wake up at least every 50ms to ask for a flush again (the loop
		// may have been flushing when we asked).
		timer := time.AfterFunc(50*time.Millisecond, func() {
			c.genMu.Lock()
			c.genCond.Broadcast()
			c.genMu.Unlock()
		})
		c.genCond.Wait()
		timer.Stop()
		reached := c.gen >= target
		c.genMu.Unlock()
		if reached {
			return
		}
	}
}
