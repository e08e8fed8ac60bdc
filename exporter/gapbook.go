package exporter

import (
	"context"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter/event"
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
	// sendMu is held while a batch carrying a marker is sent, so that no
	// recovered change of the scope overtakes its marker.
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
