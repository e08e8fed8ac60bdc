package exporter

import (
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// gapMemory is how long a sink remembers that it has a gap marker; a
// marker of the same outage seen later again is re-sent (consumers drop it
// by id), so the memory stays bounded.
const gapMemory = time.Hour

// gapBook is one sink's gap markers: the ones to send, the keys whose
// recovered change waits for a marker's ack, and the markers acknowledged.
//
// A marker is an ordinary queue item (gapItem), sent through the same path
// as a key's events. A recovered change is handed to the sink only after
// its scope's marker was acknowledged: the worker that finds the marker
// unsent parks the key here (await) and queues the marker; the marker's
// ack queues the parked keys again. So no window of sends in flight lets
// a recovered change overtake its marker, and no worker blocks on it.
type gapBook struct {
	mu      sync.Mutex
	unsent  map[string]*gap
	waiting map[string]map[item]struct{}
	sent    map[string]time.Time
}

func newGapBook() *gapBook {
	return &gapBook{unsent: map[string]*gap{}, waiting: map[string]map[item]struct{}{}, sent: map[string]time.Time{}}
}

// add notes g as one to send (unless it was acknowledged already).
func (b *gapBook) add(g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; !ok {
		b.unsent[g.ev.ID] = g
	}
}

// unsentGap is the marker of id still to send (nil: acknowledged, or
// unknown).
func (b *gapBook) unsentGap(id string) *gap {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unsent[id]
}

// await reports whether it's recovered change must wait for g's ack; if
// so, it is parked until then and g is noted as one to send.
func (b *gapBook) await(g *gap, it item) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; ok {
		return false
	}
	b.unsent[g.ev.ID] = g
	w := b.waiting[g.ev.ID]
	if w == nil {
		w = map[item]struct{}{}
		b.waiting[g.ev.ID] = w
	}
	w[it] = struct{}{}
	return true
}

// markSent records g as acknowledged; it reports whether it was new, and
// returns the keys that waited for it.
func (b *gapBook) markSent(g *gap, now time.Time) (bool, []item) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := g.ev.ID
	delete(b.unsent, id)
	var woken []item
	for it := range b.waiting[id] {
		woken = append(woken, it)
	}
	delete(b.waiting, id)
	if _, ok := b.sent[id]; ok {
		return false, woken
	}
	for old, at := range b.sent {
		if now.Sub(at) > gapMemory {
			delete(b.sent, old)
		}
	}
	b.sent[id] = now
	return true, woken
}

// sendGapNow queues a gap marker to be sent even if nothing changed.
func (r *sinkRunner) sendGapNow(g *gap) {
	r.gaps.add(g)
	r.queue.Add(gapItem(g))
}

// prepareGap is the delivery of a gap item: its marker, or nothing when it
// was acknowledged meanwhile.
func (r *sinkRunner) prepareGap(it item) *delivery {
	d := &delivery{it: it, gap: r.gaps.unsentGap(it.gap)}
	if d.gap != nil {
		d.out.Events = []*event.Event{d.gap.ev}
	}
	return d
}

// gapSent records a marker the sink acknowledged (or refused for good),
// counts it once per id, and queues the keys that waited for it.
func (r *sinkRunner) gapSent(g *gap) {
	isNew, woken := r.gaps.markSent(g, time.Now())
	for _, it := range woken {
		r.queue.Add(it)
	}
	if !isNew {
		return
	}
	r.gapsSent.Add(1)
	if d, ok := g.ev.Data.(*event.GapData); ok {
		r.sh.metrics.gaps.WithLabelValues(r.name, d.Reason).Inc()
	}
}
