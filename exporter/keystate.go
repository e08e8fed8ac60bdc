package exporter

import (
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
)

// pending is what a sink knows about a key between the moment a change of
// it is noticed and the moment that change is delivered: one record per
// key, created by enqueue and removed when a worker finishes the key. Its
// size is bounded by the number of keys waiting or in flight.
type pending struct {
	// noticed is when the oldest undelivered change was noticed (delivery
	// latency, oldest-pending gauge).
	noticed time.Time
	// recovered, when set, marks the next change as seen through a restart
	// or relist: it is sent recovered, after this gap marker. It is cleared
	// when the key is finished, whether or not a change was sent, so a
	// later live change is never labelled recovered.
	recovered *gap
	// others are the markers of other scopes the next change is also
	// recovered through (overlapping scopes of one sink that relisted
	// both): each is sent before it too, at most one per scope.
	others []*gap
	// attempted is the last state whose send failed retryably: the sink
	// may hold it anyway (a lost ack), so a later deletion, or a change of
	// uid, must also retract it.
	attempted *state.Record
	// gen counts handler updates, so that a worker finishing the key keeps
	// what was noted while it worked.
	gen uint64
	// tombWaits counts how often a worker found the object gone with no
	// final state yet (awaitTombstone).
	tombWaits int
	// snapshot is the snapshot this key owes an event (nil: none).
	snapshot *snapshotRun
}

// pendingSet is one sink's pending records, by queue item (a key item):
// the item, with its interned resource, hashes cheaper than the Key.
type pendingSet struct {
	mu sync.Mutex
	m  map[item]*pending
}

func newPendingSet() *pendingSet { return &pendingSet{m: map[item]*pending{}} }

// note records that k changed, optionally through a gap, and returns
// nothing to do for the caller but queue the key: set reports whether g
// became the key's recovered marker, released the markers the key no
// longer refers to (an older one of the same scope).
func (p *pendingSet) note(k item, g *gap, now time.Time) (set bool, released []*gap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[k]
	if e == nil {
		e = &pending{noticed: now}
		p.m[k] = e
	}
	if g != nil && e.recovered != g {
		set = true
		if old := e.recovered; old != nil && old.ev.Subject == g.ev.Subject {
			released = append(released, old)
		} else if old != nil {
			// Another scope's marker: the change follows both. A new
			// slice: snapshots share the old one.
			others := make([]*gap, 0, len(e.others)+1)
			for _, o := range e.others {
				if o.ev.Subject == g.ev.Subject || o.ev.Subject == old.ev.Subject {
					released = append(released, o)
					continue
				}
				others = append(others, o)
			}
			e.others = append(others, old)
		}
		e.recovered = g
	}
	e.gen++
	return set, released
}

// snapshot returns a copy of k's record (zero if none).
func (p *pendingSet) snapshot(k item) pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.m[k]; e != nil {
		return *e
	}
	return pending{}
}

// failed keeps k's record for the retry, remembering the attempted state.
func (p *pendingSet) failed(k item, attempted *state.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[k]
	if e == nil {
		e = &pending{noticed: time.Now()}
		p.m[k] = e
	}
	if attempted != nil {
		e.attempted = attempted
	}
}

// finish ends what snap stood for: the record goes unless a handler noted
// a newer change meanwhile, in which case only what was consumed is
// cleared. It returns when the finished change was noticed, and the
// recovered markers the key no longer refers to.
func (p *pendingSet) finish(k item, snap pending) (time.Time, []*gap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[k]
	if e == nil {
		return snap.noticed, nil
	}
	noticed := e.noticed
	var released []*gap
	if e.recovered != nil && e.recovered == snap.recovered {
		released = append(released, e.recovered)
	}
	if e.gen == snap.gen {
		released = append(released, e.others...)
		delete(p.m, k)
		return noticed, released
	}
	if e.recovered == snap.recovered {
		e.recovered = nil
	}
	if len(snap.others) > 0 && len(e.others) > 0 {
		var kept []*gap
		for _, o := range e.others {
			consumed := false
			for _, s := range snap.others {
				consumed = consumed || s == o
			}
			if consumed {
				released = append(released, o)
			} else {
				kept = append(kept, o)
			}
		}
		e.others = kept
	}
	if e.attempted == snap.attempted {
		e.attempted = nil
	}
	if e.snapshot == snap.snapshot {
		e.snapshot = nil // this round settled it
	}
	e.noticed = time.Now()
	return noticed, released
}

// oldest is when the oldest undelivered change was noticed.
func (p *pendingSet) oldest() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var oldest time.Time
	for _, e := range p.m {
		if oldest.IsZero() || e.noticed.Before(oldest) {
			oldest = e.noticed
		}
	}
	return oldest, !oldest.IsZero()
}

// has reports whether k waits or is in flight.
func (p *pendingSet) has(k item) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[k]
	return ok
}

func (p *pendingSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// maxTombstoneWaits bounds how often a key whose object vanished waits for
// its handler to bring the final state (10 ms doubling: about 1.3 s).
const maxTombstoneWaits = 7

// awaitTombstone reports whether k should wait once more for the final
// state of its vanished object, and after how long. The informer drops an
// object from its cache before its handler stores the final state: a
// worker in between would infer the deletion from the last delivered
// state, under another id than a sink that saw the final state.
func (p *pendingSet) awaitTombstone(k item) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[k]
	if e == nil || e.tombWaits >= maxTombstoneWaits {
		return 0, false
	}
	e.tombWaits++
	return 10 * time.Millisecond << (e.tombWaits - 1), true
}

// noteSnapshot notes that k owes run a snapshot event, and reports whether
// it did not already. An abandoned run is noted nowhere: a split send
// handing on a run abandoned while its first step was in flight would
// otherwise take the key from the run that noted it since.
func (p *pendingSet) noteSnapshot(k item, run *snapshotRun, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if run.abandoned.Load() {
		return false
	}
	e := p.m[k]
	if e == nil {
		e = &pending{noticed: now}
		p.m[k] = e
	}
	if e.snapshot == run {
		return false
	}
	e.snapshot = run
	e.gen++
	return true
}

// dropSnapshot forgets run on every key (it was abandoned).
func (p *pendingSet) dropSnapshot(run *snapshotRun) {
	p.mu.Lock()
	defer p.mu.Unlock()
	run.abandoned.Store(true)
	for _, e := range p.m {
		if e.snapshot == run {
			e.snapshot = nil
		}
	}
}
