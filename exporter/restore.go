package exporter

import (
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
	"go.uber.org/zap"
)

// parkedRecords are the scopes a restored checkpoint knows that no
// current scope matches yet: a rule whose resource is not resolved (a CRD
// installed later) or a namespace selector not reconciled. Their records
// wait, so deletions made while kubefeed was down are still found when the
// scope appears; they are forgotten (left the scope) only once every rule
// resolved and every selector reconciled.
type parkedRecords struct {
	mu       sync.Mutex
	bySink   map[*sinkRunner]map[string]parkedScope // by scope name
	resolved bool                                   // every rule resolved
}

// parkedScope is a restored scope name no current scope had: the
// checkpoint's time, and whether a scope of that name appeared since.
type parkedScope struct {
	at    time.Time
	taken bool
}

func (p *parkedRecords) park(r *sinkRunner, scope string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySink == nil {
		p.bySink = map[*sinkRunner]map[string]parkedScope{}
	}
	if p.bySink[r] == nil {
		p.bySink[r] = map[string]parkedScope{}
	}
	p.bySink[r][scope] = parkedScope{at: at}
}

// take returns the checkpoint time of a parked scope name, to every scope
// of that name that appears (scope names carry no version: widgets at v1
// and at v2 are two scopes of one name), and marks it taken: its records
// are no longer forgotten.
func (p *parkedRecords) take(r *sinkRunner, scope string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps, ok := p.bySink[r][scope]
	if ok {
		ps.taken = true
		p.bySink[r][scope] = ps
	}
	return ps.at, ok
}

func (p *parkedRecords) done() {
	p.mu.Lock()
	p.resolved = true
	p.mu.Unlock()
}

// restore prepares the scopes whose sinks restored a checkpoint: their
// initial list is compared with it (nothing is skipped), and their changes
// are recovered after a restart gap marker. Records of scopes not present
// now are parked.
func (e *Exporter) restore() {
	now := e.now()
	for _, r := range e.runners {
		rs, ok := r.store.(state.Restorer)
		if !ok {
			continue
		}
		at, ok := rs.Restored()
		if !ok {
			continue
		}
		// Scope names carry no version: widgets at v1 and at v2 are two
		// scopes of one name, and each compares its list with the records.
		current := map[string][]*scope{}
		for _, s := range r.scopeList() {
			current[s.name] = append(current[s.name], s)
		}
		known := map[string]bool{}
		r.store.Range(func(k state.Key, rec state.Record) bool {
			if name, changed := canonicalScopeName(rec.Scope); changed && !isSentinel(k) {
				// Written by an older kubefeed under the legacy name of
				// the same scope: kept, under its name now.
				rec.Scope = name
				r.store.Put(k, rec)
			}
			known[rec.Scope] = true
			if rec.Sent != nil {
				// A change perhaps sent just before the previous run
				// ended: sent again, on every sink, with its time.
				e.observed.restored(keyItem(k), rec.UID, rec.Sent.ResourceVersion, rec.Deleting, rec.Sent.Time)
			}
			return true
		})
		restored, parked := 0, 0
		e.mu.Lock()
		for name := range known {
			if len(current[name]) == 0 {
				e.parked.park(r, name, at)
				parked++
				continue
			}
			for _, s := range current[name] {
				g := newGap(e.cfg.Cluster, s.id, s.res, at, now, gapRestart)
				s.update(func(t *scopeTable) { t.restoreRoute(r, g) })
				restored++
			}
		}
		e.mu.Unlock()
		e.log.Info("checkpoint restored", zap.String("sink", r.name), zap.Time("saved", at), zap.Int("scopes", restored), zap.Int("scopes waiting (resource or namespace not there yet)", parked))
	}
}

// restoreRoute makes sink r's route compare the initial list with its
// checkpoint, as recovered changes after g.
func (t *scopeTable) restoreRoute(r *sinkRunner, g *gap) {
	for i := range t.routes {
		if t.routes[i].sink == r {
			t.routes[i].restoreGap, t.routes[i].skipInitial = g, false
		}
	}
}

// unpark gives a new scope the restored records parked for it. Callers
// hold e.mu, inside the scope's table update.
func (e *Exporter) unpark(s *scope, t *scopeTable) {
	for _, rt := range t.routes {
		if at, ok := e.parked.take(rt.sink, s.name); ok {
			t.restoreRoute(rt.sink, newGap(e.cfg.Cluster, s.id, s.res, at, e.now(), gapRestart))
			s.log.Info("scope appeared; comparing it with the restored checkpoint", zap.String("sink", rt.sink.name))
		}
	}
}

// forgetParked forgets the records of scopes that no longer exist, once
// every rule resolved and every namespace selector reconciled: those
// objects left the configured scopes (not a deletion).
func (e *Exporter) forgetParked() {
	if !e.namespaces.reconciled() {
		return
	}
	p := &e.parked
	p.mu.Lock()
	if !p.resolved {
		p.mu.Unlock()
		return
	}
	bySink := p.bySink
	p.bySink = nil
	p.mu.Unlock()
	for r, names := range bySink {
		forgotten := 0
		r.store.Range(func(k state.Key, rec state.Record) bool {
			if ps, ok := names[rec.Scope]; ok && !ps.taken {
				r.store.Delete(k)
				forgotten++
			}
			return true
		})
		if forgotten > 0 {
			e.log.Info("forgot checkpoint records of scopes no longer configured", zap.String("sink", r.name), zap.Int("records", forgotten))
		}
	}
}

// sendStartGaps sends a gap marker for every scope at once when the
// checkpoint was lost.
func (e *Exporter) sendStartGaps() {
	if e.startGap == "" {
		return
	}
	now := e.now()
	for _, r := range e.runners {
		for _, s := range r.scopeList() {
			r.sendGapNow(newGap(e.cfg.Cluster, s.id, s.res, time.Time{}, now, e.startGap))
		}
	}
}
