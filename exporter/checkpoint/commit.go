package checkpoint

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	// flushTimeout bounds one flush, whoever asks for it.
	flushTimeout = 30 * time.Second
	// closeTimeout bounds the last flush on shutdown, so that a backend
	// that is down cannot hold the process.
	closeTimeout = 10 * time.Second
)

// committer is what both backends share: the flush loop, group commit for
// Sync, and flush statistics.
type committer struct {
	wake chan struct{}

	seqMu     sync.Mutex
	started   uint64        // flushes begun (each backend runs one at a time)
	completed uint64        // sequence number of the last flush that ended
	lastErr   error         // its error
	ended     chan struct{} // closed and replaced whenever a flush ends

	flushes, flushErrors, skipped atomic.Int64
	shrunk, refused               atomic.Int64
	lastFlush, lastDuration       atomic.Int64 // unix nanos, nanos

	// noted holds the keys whose refusal or shrinking was logged, so that
	// each is logged once (until it is written in full again).
	notedMu sync.Mutex
	noted   map[string]bool
}

func newCommitter() *committer {
	return &committer{wake: make(chan struct{}, 1), ended: make(chan struct{}), noted: map[string]bool{}}
}

// loop flushes every FlushInterval, and at once when Sync asks, until ctx
// ends (which also ends a flush in progress). What is left is written by
// Close, within closeTimeout.
func (c *committer) loop(ctx context.Context, flush func(context.Context) error, log *zap.Logger) error {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
			// Let concurrent waiters join this commit.
			time.Sleep(2 * time.Millisecond)
		case <-t.C:
		}
		if err := flush(ctx); err != nil && ctx.Err() == nil {
			log.Error("checkpoint flush failed; retrying", zap.Error(err))
		}
	}
}

// begin numbers a flush; the backend calls it holding its flush lock,
// before it takes the dirty records.
func (c *committer) begin() (seq uint64, start time.Time) {
	c.seqMu.Lock()
	c.started++
	seq = c.started
	c.seqMu.Unlock()
	return seq, time.Now()
}

// flushed records the end of flush seq that began at start.
func (c *committer) flushed(seq uint64, start time.Time, err error) {
	c.flushes.Add(1)
	c.lastDuration.Store(int64(time.Since(start)))
	if err != nil {
		c.flushErrors.Add(1)
	} else {
		c.lastFlush.Store(time.Now().UnixNano())
	}
	c.seqMu.Lock()
	c.completed, c.lastErr = seq, err
	close(c.ended)
	c.ended = make(chan struct{})
	c.seqMu.Unlock()
}

// Sync asks for a flush and waits until one that began after the call has
// ended, so that what was Put before is written; concurrent callers share
// commits. It returns that flush's error (the records stay dirty and are
// retried by the flush loop), or the context's when ctx ends first. Sync
// needs a running flush loop (Run) or another caller of Flush.
func (c *committer) Sync(ctx context.Context) error {
	c.seqMu.Lock()
	target := c.started + 1
	c.seqMu.Unlock()
	for {
		c.seqMu.Lock()
		if c.completed >= target {
			err := c.lastErr
			c.seqMu.Unlock()
			return err
		}
		ended := c.ended
		c.seqMu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default: // a flush is already asked for
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return fmt.Errorf("checkpoint sync: %w", context.Cause(ctx))
		}
	}
}

// note reports whether key was not noted yet, and notes it.
func (c *committer) note(key string) bool {
	c.notedMu.Lock()
	defer c.notedMu.Unlock()
	if c.noted[key] {
		return false
	}
	c.noted[key] = true
	return true
}

// unnote forgets key after it was written in full or deleted.
func (c *committer) unnote(key string) {
	c.notedMu.Lock()
	delete(c.noted, key)
	c.notedMu.Unlock()
}
