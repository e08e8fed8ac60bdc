package exporter

import (
	"context"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"go.uber.org/zap"
)

// addRule resolves a rule's resource and joins or creates its scopes (not
// started). Rules with a namespace selector get their scopes from the
// namespace watch instead.
func (e *Exporter) addRule(r *plan.Rule, late bool) error {
	res, err := e.resolver.Resolve(r.Config.Resource)
	if err != nil {
		return err
	}
	if r.Config.NamespaceSelector != "" && res.Namespaced {
		return e.namespaces.add(r, res)
	}
	ids, err := scopeIDs(r.Config, res)
	if err != nil {
		return err
	}
	e.joinScopes(r, res, ids, late)
	return nil
}

// joinScopes adds a rule to scopes, creating the missing ones (not
// started), and returns the ones it created. A restored checkpoint's records
// parked for a scope go to the routes that need them; a sink newly routed
// to a scope that is already running is given its current objects.
//
// late marks a resource that appeared after start (a CRD installed later):
// what its first list holds was created after kubefeed started, so it is
// sent as added whatever initialList says.
func (e *Exporter) joinScopes(r *plan.Rule, res resource.Resource, ids []scopeID, late bool) []*scope {
	type prime struct {
		s  *scope
		rt route
	}
	var created []*scope
	var primes []prime
	e.mu.Lock()
	for _, id := range ids {
		s, ok := e.scopes[id]
		if !ok {
			s = newScope(e.shared, e.resourceClient(id.GVR, id.Namespace), e.cfg.ResyncPeriod.Duration, id, res)
			e.scopes[id] = s
			created = append(created, s)
		}
		before := map[*sinkRunner]bool{}
		for _, rt := range s.table().routes {
			before[rt.sink] = true
		}
		if r.Config.Attribution == config.AttributionManagers {
			s.keepManagers.Store(true)
		}
		s.update(func(t *scopeTable) {
			t.rules = append(t.rules, r)
			for _, name := range r.Sinks {
				sr := e.byName[name]
				t.addRoute(sr, !r.EmitInitial && !late)
				sr.addScope(s)
			}
			e.unpark(s, t)
		})
		if ok && s.running.Load() {
			for _, rt := range s.table().routes {
				if !before[rt.sink] {
					primes = append(primes, prime{s, rt})
				}
			}
		}
	}
	e.mu.Unlock()
	for _, p := range primes {
		p.s.prime(p.rt)
	}
	return created
}

// leaveScopes removes a rule from scopes; a scope no rule needs any more is
// stopped, and what its sinks had delivered from it is forgotten (leaving
// the scope is not a deletion).
func (e *Exporter) leaveScopes(r *plan.Rule, ids []scopeID) {
	e.mu.Lock()
	var stopped []*scope
	for _, id := range ids {
		s, ok := e.scopes[id]
		if !ok {
			continue
		}
		s.update(func(t *scopeTable) {
			kept := t.rules[:0]
			for _, x := range t.rules {
				if x != r {
					kept = append(kept, x)
				}
			}
			t.rules = kept
		})
		if len(s.table().rules) == 0 {
			delete(e.scopes, id)
			s.stopInformer()
			stopped = append(stopped, s)
		}
	}
	e.mu.Unlock()
	for _, s := range stopped {
		for _, rt := range s.table().routes {
			rt.sink.removeScope(s)
		}
		s.log.Info("scope stopped")
	}
}

// scopeSynced runs once a scope's first list is in its cache: every sink
// records that its checkpoint covers the scope, and a sink whose
// checkpoint knew the scope queues every key it had, so deletions made
// while kubefeed was down are found.
func (e *Exporter) scopeSynced(s *scope) {
	if s.warm.Load() {
		// Listed while standing by: its handlers routed nothing. ready is
		// set before standby is read (see promote).
		s.ready.Store(true)
		if !e.standby.Load() {
			e.compareWarm(s)
		}
		s.log.Debug("scope synced")
		e.announce()
		return
	}
	for _, rt := range s.table().routes {
		st := rt.sink.store
		if _, ok := st.Get(sentinelKey(s.id)); !ok {
			st.Put(sentinelKey(s.id), state.Record{Scope: s.name})
		}
		if rt.restoreGap != nil {
			st.Range(func(k state.Key, rec state.Record) bool {
				// A scope name carries no version: the records of another
				// version's scope are that scope's to compare.
				if rec.Scope == s.name && k.GVR == s.id.GVR && !isSentinel(k) {
					rt.sink.enqueue(keyItem(k), rt.restoreGap)
				}
				return true
			})
		}
		if f, ok := st.(state.Flusher); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := f.Flush(ctx)
			cancel()
			if err != nil {
				e.log.Error("checkpoint flush after sync", zap.String("sink", rt.sink.name), zap.Error(err))
			}
		}
	}
	s.ready.Store(true)
	s.log.Debug("scope synced")
	e.announce()
}

// startScope starts a scope created after Run began.
func (e *Exporter) startScope(s *scope) {
	if err := s.start(e.scopeSynced); err != nil {
		e.log.Error("start informer", zap.String("scope", s.name), zap.Error(err))
	}
}

// resolveLoop retries rules whose resource did not exist yet (a CRD created
// after start), and starts their informers once it does.
func (e *Exporter) resolveLoop(ctx context.Context, pending []*plan.Rule) error {
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.retry):
		}
		e.resolver.Reset()
		var still []*plan.Rule
		for _, r := range pending {
			before := e.scopeSet()
			if err := e.addRule(r, true); err != nil {
				e.log.Debug("resource still not available", zap.String("resource", r.Config.Resource), zap.Error(err))
				still = append(still, r)
				continue
			}
			e.log.Info("resource appeared; watching", zap.Int("rule", r.Index), zap.String("resource", r.Config.Resource))
			for id, s := range e.scopeSet() {
				if before[id] == nil {
					e.startScope(s)
				}
			}
		}
		pending = still
	}
	e.parked.done()
	e.forgetParked()
	return nil
}

func (e *Exporter) scopeSet() map[scopeID]*scope {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[scopeID]*scope, len(e.scopes))
	for id, s := range e.scopes {
		out[id] = s
	}
	return out
}

// watchdog restarts watches that made no progress for cfg.WatchTimeout.
// The API server sends bookmarks about every minute, so a healthy watch
// on an idle resource still makes progress.
func (e *Exporter) watchdog(ctx context.Context) error {
	timeout := e.cfg.WatchTimeout.Duration
	t := time.NewTicker(max(timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, s := range e.scopeSet() {
				if s.restartStalledWatch(timeout) {
					e.stalls.Add(1)
					e.metrics.stalled.WithLabelValues(resourceLabel(s.res)).Inc()
				}
			}
		}
	}
}

// pruneEvery is how often tombstones no sink needs go.
const pruneEvery = 30 * time.Second

// pendingAnywhere reports whether some sink has it waiting or in flight.
func (e *Exporter) pendingAnywhere(it item) bool {
	for _, r := range e.runners {
		if r.pending.has(it) {
			return true
		}
	}
	return false
}

// observationsPruneEvery is how often observations no sink needs go: a
// drain leaves one per object it delivered, freed soon after.
const observationsPruneEvery = 5 * time.Second

func (e *Exporter) pruneLoop(ctx context.Context) error {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	o := time.NewTicker(observationsPruneEvery)
	defer o.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.tombstones.prune(e.runners)
		case <-o.C:
			e.observed.prune(e.pendingAnywhere, observationsPruneEvery)
		}
	}
}

// namespacesReconciled: a namespace selector reconciled for the first
// time, so parked records no scope claims may be forgotten once every
// selector has, and the first sync announced.
func (e *Exporter) namespacesReconciled() {
	e.forgetParked()
	e.announce()
}
