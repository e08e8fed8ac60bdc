package exporter

import (
	"context"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// gapMemory is how long a sink remembers that it has a gap marker; a
// marker of the same outage seen later again is re-sent (consumers drop it
// by id), so the memory stays bounded.
const gapMemory = time.Hour

// gapBook is one sink's gap markers: the ones queued to be sent on their
// own (eager) and the ones acknowledged.
type gapBook struct {
	mu    sync.Mutex
	eager map[string]*gap
	sent  map[string]time.Time
	// sendMu is held while a marker is sent ahead of the first recovered
	// change of its scope, so that the others wait for its ack.
	sendMu sync.Mutex
}

func newGapBook() *gapBook {
	return &gapBook{eager: map[string]*gap{}, sent: map[string]time.Time{}}
}

func (b *gapBook) isSent(g *gap) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.sent[g.ev.ID]
	return ok
}

// markSent records g as acknowledged; it reports whether it was new.
func (b *gapBook) markSent(g *gap, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; ok {
		return false
	}
	for id, at := range b.sent {
		if now.Sub(at) > gapMemory {
			delete(b.sent, id)
		}
	}
	b.sent[g.ev.ID] = now
	return true
}

func (b *gapBook) queueEager(g *gap) {
	b.mu.Lock()
	b.eager[g.ev.ID] = g
	b.mu.Unlock()
}

func (b *gapBook) takeEager(id string) *gap {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.eager[id]
	delete(b.eager, id)
	return g
}

// sendGapNow queues a gap marker to be sent even if nothing changed.
func (r *sinkRunner) sendGapNow(g *gap) {
	r.gaps.queueEager(g)
	r.queue.Add(gapItem(g))
}

func (r *sinkRunner) sendEagerGap(ctx context.Context, id string) error {
	g := r.gaps.takeEager(id)
	if g == nil || r.gaps.isSent(g) {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	if err := r.sink.Send(sctx, []*event.Event{g.ev}); err != nil && !sinks.IsPermanent(err) {
		r.gaps.queueEager(g)
		return err
	}
	r.gapSent(g)
	return nil
}

// sendGapFirst sends g on its own and waits for its ack, unless it was
// already acknowledged. Recovered changes of its scope are handed to the
// sink only after that, so no window of sends in flight lets one overtake
// the marker, even when a send in the middle of the window fails.
func (r *sinkRunner) sendGapFirst(ctx context.Context, g *gap) error {
	if r.gaps.isSent(g) {
		return nil
	}
	r.gaps.sendMu.Lock()
	defer r.gaps.sendMu.Unlock()
	if r.gaps.isSent(g) {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	err := r.sink.Send(sctx, []*event.Event{g.ev})
	if err != nil && !sinks.IsPermanent(err) {
		return err
	}
	if err == nil {
		r.delivered.Add(1)
	}
	r.gapSent(g)
	return nil
}

// gapSent counts a marker the sink acknowledged (once per id).
func (r *sinkRunner) gapSent(g *gap) {
	if !r.gaps.markSent(g, time.Now()) {
		return
	}
	r.gapsSent.Add(1)
	if d, ok := g.ev.Data.(*event.GapData); ok {
		r.ex.metrics.gaps.WithLabelValues(r.name, d.Reason).Inc()
	}
}
