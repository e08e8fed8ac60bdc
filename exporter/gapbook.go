package exporter

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// gapMemory is how long a sink remembers that it has a gap marker; a
// marker of the same outage seen later again is re-sent (consumers drop it
// by id), so the memory stays bounded.
const gapMemory = time.Hour

// gapBook is one sink's gap markers: those some pending change is
// recovered through and the sink has not acknowledged, per scope in the
// order they were noted, with how many keys refer to each; the ones
// queued to be sent on their own (eager); and the ones acknowledged. A
// marker no pending key refers to any more is sent only before a later
// marker of its scope that is needed (release).
//
// A recovered change is handed to the sink only after its marker, and
// every marker of its scope noted before it, were acknowledged: markers of
// one scope reach the sink in order, each before the changes recovered
// through it, even through a window of sends in flight and sends that
// fail. sendMu is held while markers are sent ahead of a recovered change,
// so that the other workers wait for their acks.
type gapBook struct {
	mu     sync.Mutex
	needed map[string][]*gap // by scope (the marker's subject)
	refs   map[string]int    // by id: pending keys recovered through it
	eager  map[string]*gap   // by id
	sent   map[string]time.Time
	sendMu sync.Mutex
}

func newGapBook() *gapBook {
	return &gapBook{needed: map[string][]*gap{}, refs: map[string]int{}, eager: map[string]*gap{}, sent: map[string]time.Time{}}
}

// retain records that one more pending key is recovered through g, so
// that g goes out before that key's change and before any later marker of
// its scope.
func (b *gapBook) retain(g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs[g.ev.ID]++
	b.noteLocked(g)
}

// release records that one key fewer refers to g. A marker no key refers
// to is still sent before a later marker of its scope that some key (or
// eagerness) needs, so that an outage it reports is not lost; once no
// later marker needs it, it is dropped: a relist whose changes came to
// nothing sends no marker.
func (b *gapBook) release(g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := g.ev.ID
	if b.refs[id]--; b.refs[id] > 0 {
		return
	}
	delete(b.refs, id)
	list := b.needed[g.ev.Subject]
	last := -1
	for i, have := range list {
		if _, eager := b.eager[have.ev.ID]; eager || b.refs[have.ev.ID] > 0 {
			last = i
		}
	}
	if last < 0 {
		delete(b.needed, g.ev.Subject)
	} else {
		b.needed[g.ev.Subject] = list[:last+1]
	}
}

// dropLocked takes g off its scope's list; b.mu is held.
func (b *gapBook) dropLocked(g *gap) {
	id, scope := g.ev.ID, g.ev.Subject
	list := b.needed[scope][:0]
	for _, have := range b.needed[scope] {
		if have.ev.ID != id {
			list = append(list, have)
		}
	}
	if len(list) == 0 {
		delete(b.needed, scope)
	} else {
		b.needed[scope] = list
	}
}

func (b *gapBook) noteLocked(g *gap) {
	if _, ok := b.sent[g.ev.ID]; ok {
		return
	}
	scope := g.ev.Subject
	for _, have := range b.needed[scope] {
		if have.ev.ID == g.ev.ID {
			return
		}
	}
	b.needed[scope] = append(b.needed[scope], g)
}

func (b *gapBook) isSent(g *gap) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.sent[g.ev.ID]
	return ok
}

// upTo returns the markers of g's scope still to send before a change
// recovered through g: those noted before g, then g.
func (b *gapBook) upTo(g *gap) []*gap {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; ok {
		return nil // sent while the caller waited for sendMu
	}
	b.noteLocked(g)
	var out []*gap
	for _, have := range b.needed[g.ev.Subject] {
		if _, ok := b.sent[have.ev.ID]; ok {
			continue
		}
		out = append(out, have)
		if have.ev.ID == g.ev.ID {
			break
		}
	}
	return out
}

// markSent records g as acknowledged; it reports whether it was new.
func (b *gapBook) markSent(g *gap, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := g.ev.ID
	b.dropLocked(g)
	delete(b.eager, id)
	if _, ok := b.sent[id]; ok {
		return false
	}
	for old, at := range b.sent {
		if now.Sub(at) > gapMemory {
			delete(b.sent, old)
		}
	}
	b.sent[id] = now
	return true
}

func (b *gapBook) queueEager(g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; !ok {
		b.eager[g.ev.ID] = g
		b.noteLocked(g)
	}
}

func (b *gapBook) eagerGap(id string) *gap {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eager[id]
}

// sendGapNow queues a gap marker to be sent even if nothing changed.
func (r *sinkRunner) sendGapNow(g *gap) {
	r.gaps.queueEager(g)
	r.queue.Add(gapItem(g))
}

// markersFirst sends, unless the sink has them, the markers a change
// recovered through g must follow (g, and the markers of its scope noted
// before it), in order, each acknowledged before the next.
func (r *sinkRunner) markersFirst(ctx context.Context, g *gap) error {
	if r.gaps.isSent(g) {
		return nil
	}
	r.gaps.sendMu.Lock()
	defer r.gaps.sendMu.Unlock()
	for _, m := range r.gaps.upTo(g) {
		if err := r.sendMarker(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// sendMarker publishes one marker and waits for its ack (at most
// sendTimeout). A marker the sink refuses for good is dropped and counted,
// and the changes after it go on.
func (r *sinkRunner) sendMarker(ctx context.Context, m *gap) error {
	if err := r.sendAlone(ctx, m.ev, "gap marker"); err != nil {
		return err
	}
	r.gapSent(m)
	return nil
}

// sendAlone publishes ev (a marker) on its own and waits, at most
// sendTimeout, for its outcome: nil once acknowledged, or refused for
// good (then dropped, counted and logged as what; the feed goes on), else
// the retryable error.
func (r *sinkRunner) sendAlone(ctx context.Context, ev *event.Event, what string) error {
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	err := sinks.Await(sctx, "waiting for the ack of "+ev.ID, func(done func(error)) error {
		r.publish(sctx, []*event.Event{ev}, done)
		return nil
	})
	switch {
	case err == nil:
		r.delivered.Add(1)
	case sinks.IsPermanent(err):
		r.dropped.Add(1)
		r.sh.metrics.dropped.WithLabelValues(r.name).Inc()
		r.log.Error("permanent send error, "+what+" dropped for this sink", zap.String("id", ev.ID), zap.Error(err))
		return nil
	}
	return err
}

// gapSent records a marker the sink acknowledged (or refused for good),
// counted once per id.
func (r *sinkRunner) gapSent(g *gap) {
	if !r.gaps.markSent(g, time.Now()) {
		return
	}
	r.gapsSent.Add(1)
	if d, ok := g.ev.Data.(*event.GapData); ok {
		r.sh.metrics.gaps.WithLabelValues(r.name, d.Reason).Inc()
	}
}
