package exporter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
	"go.uber.org/zap"
)

// syncTimeout bounds one checkpoint group commit.
const syncTimeout = 10 * time.Second

// committer finishes keys whose delivery must reach the checkpoint before
// the key is done (an object appeared, vanished or changed uid), and sends
// what must be written ahead of its send (sendAfterCommit): keys
// acknowledged while a Sync runs wait for the next one, so a window of
// acks shares one group commit, and no ack goroutine blocks on the disk.
// At most one goroutine per sink runs it, and only while keys wait.
type committer struct {
	mu      sync.Mutex
	waiting []item
	// sends are deliveries whose record written ahead must be durable
	// before they are sent: the commit that makes it so is shared by all
	// sends waiting at that moment, and by acks waiting (waiting).
	sends   []*delivery
	running bool
	// slots bounds sends waiting for a commit (maxAheadWaiting): a worker
	// handing over one more waits for a slot.
	slots chan struct{}
}

// maxAheadWaiting bounds the sends waiting for one checkpoint commit.
const maxAheadWaiting = 1024

// sendAfterCommit sends d once the next checkpoint Sync has made its
// record written ahead durable; a failed Sync settles d's item with the
// error (retried with backoff, nothing sent).
func (r *sinkRunner) sendAfterCommit(ctx context.Context, d *delivery) {
	c := &r.commits
	c.mu.Lock()
	if c.slots == nil {
		c.slots = make(chan struct{}, maxAheadWaiting)
	}
	slots := c.slots
	c.mu.Unlock()
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		r.settle(ctx, d.it, context.Cause(ctx))
		return
	}
	c.mu.Lock()
	c.sends = append(c.sends, d)
	r.startCommitLoop(ctx)
}

// commitThenSettle settles it after the next checkpoint Sync.
func (r *sinkRunner) commitThenSettle(ctx context.Context, it item) {
	c := &r.commits
	c.mu.Lock()
	c.waiting = append(c.waiting, it)
	r.startCommitLoop(ctx)
}

// startCommitLoop starts the commit loop unless it runs; the caller holds
// c.mu, which it releases.
func (r *sinkRunner) startCommitLoop(ctx context.Context) {
	c := &r.commits
	if c.running {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	go r.commitLoop(ctx)
}

func (r *sinkRunner) commitLoop(ctx context.Context) {
	c := &r.commits
	sy := r.store.(state.Syncer)
	sd := &sendDeadline{parent: ctx}
	defer sd.stop()
	for {
		c.mu.Lock()
		batch, sends := c.waiting, c.sends
		c.waiting, c.sends = nil, nil
		if len(batch) == 0 && len(sends) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		err := sy.Sync(sctx)
		cancel()
		if err != nil {
			r.log.Warn("checkpoint not yet written; continuing", zap.Int("keys", len(batch)), zap.Int("sends held back", len(sends)), zap.Error(err))
		}
		for _, it := range batch {
			r.settle(ctx, it, nil)
		}
		for _, d := range sends {
			<-c.slots
			if err != nil {
				r.settle(ctx, d.it, fmt.Errorf("checkpoint before sending %s: %w", d.it.key(), err))
				continue
			}
			r.dispatch(ctx, d, sd)
		}
	}
}
