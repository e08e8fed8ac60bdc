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
//
// A key is parked on one marker at a time: recovered again through a
// newer marker (a second relist), it waits for that one, and a marker no
// key waits for any more is not sent at all, unless it was queued on its
// own (eager: a restart's marker).
type gapBook struct {
	mu     sync.Mutex
	unsent map[string]*unsentGap
	parked map[item]string // key -> id of the marker it waits for
	sent   map[string]time.Time
}

// unsentGap is a marker to send and the keys waiting for its ack.
type unsentGap struct {
	g       *gap
	eager   bool // queued on its own: sent even when no key waits
	waiting map[item]struct{}
}

func newGapBook() *gapBook {
	return &gapBook{unsent: map[string]*unsentGap{}, parked: map[item]string{}, sent: map[string]time.Time{}}
}

// entry returns g's entry, made if need be; b.mu is held.
func (b *gapBook) entry(g *gap) *unsentGap {
	e := b.unsent[g.ev.ID]
	if e == nil {
		e = &unsentGap{g: g, waiting: map[item]struct{}{}}
		b.unsent[g.ev.ID] = e
	}
	return e
}

// add notes g as one to send even if no key waits for it (unless it was
// acknowledged already).
func (b *gapBook) add(g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sent[g.ev.ID]; !ok {
		b.entry(g).eager = true
	}
}

// unsentGap is the marker of id still to send: nil when it was
// acknowledged, or when no key waits for it any more and it is not eager
// (it is then forgotten).
func (b *gapBook) unsentGap(id string) *gap {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.unsent[id]
	if e == nil {
		return nil
	}
	if !e.eager && len(e.waiting) == 0 {
		delete(b.unsent, id)
		return nil
	}
	return e.g
}

// recoveredAgain notes that it's next change is recovered through g: a
// key parked on an older marker waits for g from now on (await parks it
// there when its change is planned).
func (b *gapBook) recoveredAgain(it item, g *gap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unparkLocked(it, g.ev.ID)
}

// unparkLocked takes it off the marker it waits for unless that is id;
// a marker no key waits for any more is forgotten unless eager. b.mu is
// held.
func (b *gapBook) unparkLocked(it item, id string) {
	old, ok := b.parked[it]
	if !ok || old == id {
		return
	}
	delete(b.parked, it)
	if e := b.unsent[old]; e != nil {
		delete(e.waiting, it)
		if !e.eager && len(e.waiting) == 0 {
			delete(b.unsent, old)
		}
	}
}

// await reports whether it's recovered change must wait for g's ack; if
// so, it is parked until then and g is noted as one to send. A key parked
// on another marker waits for g instead.
func (b *gapBook) await(g *gap, it item) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := g.ev.ID
	b.unparkLocked(it, id)
	if _, ok := b.sent[id]; ok {
		return false
	}
	b.entry(g).waiting[it] = struct{}{}
	b.parked[it] = id
	return true
}

// markSent records g as acknowledged; it reports whether it was new, and
// returns the keys that waited for it.
func (b *gapBook) markSent(g *gap, now time.Time) (bool, []item) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := g.ev.ID
	var woken []item
	if e := b.unsent[id]; e != nil {
		for it := range e.waiting {
			woken = append(woken, it)
			delete(b.parked, it)
		}
		delete(b.unsent, id)
	}
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
// counts it once per id, and queues the keys that waited for it. While the
// queue shuts down it takes no more items: the drain then delivers them
// (resume).
func (r *sinkRunner) gapSent(g *gap) {
	isNew, woken := r.gaps.markSent(g, time.Now())
	for _, it := range woken {
		r.queue.Add(it)
		if r.queue.ShuttingDown() {
			r.resume(it)
		}
	}
	if !isNew {
		return
	}
	r.gapsSent.Add(1)
	if d, ok := g.ev.Data.(*event.GapData); ok {
		r.sh.metrics.gaps.WithLabelValues(r.name, d.Reason).Inc()
	}
}
