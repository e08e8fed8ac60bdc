package exporter

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// syncTimeout bounds one checkpoint group commit.
const syncTimeout = 10 * time.Second

// committer finishes keys whose delivery must reach the checkpoint before
// the key is done (an object appeared, vanished or changed uid): keys
// acknowledged while a Sync runs wait for the next one, so a window of
// acks shares one group commit, and no ack goroutine blocks on the disk.
// At most one goroutine per sink runs it, and only while keys wait.
type committer struct {
	mu      sync.Mutex
	waiting []item
	running bool
}

// commitThenSettle settles it after the next checkpoint Sync.
func (r *sinkRunner) commitThenSettle(ctx context.Context, it item) {
	c := &r.commits
	c.mu.Lock()
	c.waiting = append(c.waiting, it)
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
	sy := r.store.(Syncer)
	for {
		c.mu.Lock()
		batch := c.waiting
		c.waiting = nil
		if len(batch) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		if err := sy.Sync(sctx); err != nil {
			r.log.Warn("checkpoint not yet written; continuing", zap.Int("keys", len(batch)), zap.Error(err))
		}
		cancel()
		for _, it := range batch {
			r.settle(ctx, it, nil)
		}
	}
}
