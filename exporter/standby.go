package exporter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// A warm standby (Options.Standby) runs its informers before it leads, so
// that taking the Lease costs no list: its caches hold what the API server
// has, and its stores follow the shared checkpoint (the caller keeps them
// current). Lead hands it the sinks; it then compares each cached object
// with its sink's record and queues only those that differ, plus the
// records whose object is gone, after the restart gap marker a restored
// checkpoint gets. A standby whose scopes had not synced when it took the
// Lease compares them once they do.

// leadership is what Lead hands a standby's Run.
type leadership struct {
	ctx, sendCtx context.Context
	sinks        map[string]sinks.Sink
}

// Standby reports whether the Exporter waits for Lead.
func (e *Exporter) Standby() bool { return e.standby.Load() }

// Lead makes a standby Run the leader: from now on it delivers to ss (one
// sink per configured sink), stops taking work when ctx ends, and cancels
// sends in flight when sendCtx ends (as Options.SendContext). Its stores
// must hold the shared checkpoint as it is now, and nothing else may
// write them. Lead returns at once; Run returns once it drained.
func (e *Exporter) Lead(ctx, sendCtx context.Context, ss map[string]sinks.Sink) error {
	if e.leads == nil {
		return errors.New("exporter: Lead on an Exporter that is not a standby")
	}
	for _, r := range e.runners {
		if ss[r.name] == nil {
			return fmt.Errorf("exporter: no sink given for %q", r.name)
		}
	}
	e.leadMu.Lock()
	defer e.leadMu.Unlock()
	if e.noLead {
		return fmt.Errorf("exporter: Lead: %w", ErrStopped)
	}
	if !e.led.CompareAndSwap(false, true) {
		return errors.New("exporter: Lead called twice")
	}
	e.leads <- leadership{ctx: ctx, sendCtx: sendCtx, sinks: ss}
	return nil
}

// refuseLead is a standby's stop without leading: later Leads fail with
// ErrStopped, and the sinks of one that came as it stopped (Run saw the
// stop first) are closed, since no leader will.
func (e *Exporter) refuseLead() {
	e.leadMu.Lock()
	defer e.leadMu.Unlock()
	e.noLead = true
	select {
	case l := <-e.leads:
		// l.ctx may have ended (the stop itself): the sinks sent nothing,
		// and closing them gets a bound of its own.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for name, s := range l.sinks {
			if err := s.Close(ctx); err != nil {
				e.log.Warn("closing a sink handed over as the standby stopped", zap.String("sink", name), zap.Error(err))
			}
		}
	default:
	}
}

// promote turns the standby into the leader, before its workers start:
// the restored checkpoint is matched with the scopes, handlers route
// again, and every scope that synced while standing by is compared with
// it.
func (e *Exporter) promote(ss map[string]sinks.Sink) {
	for _, r := range e.runners {
		r.setSink(ss[r.name])
	}
	e.restore()
	e.forgetParked()
	// A watch may lag what the old leader delivered: the warm scopes'
	// keys wait until their handlers saw as much (catchup.go).
	newest := e.newestRecorded()
	for _, s := range e.scopeSet() {
		if s.warm.Load() {
			s.startCatchUp(newest)
		}
	}
	// From here handlers route. A scope that syncs after this line is
	// compared by scopeSynced; one that synced before it, here. ready is
	// set before scopeSynced reads standby, and standby cleared before
	// this reads ready: no scope is missed by both.
	e.standby.Store(false)
	queued := 0
	for _, s := range e.scopeSet() {
		if s.warm.Load() && s.ready.Load() {
			queued += e.compareWarm(s)
		}
	}
	e.log.Info("became the leader with warm caches; delivering what the checkpoint lacks", zap.Int("keys queued", queued))
}

// compareWarm tells every sink routed to s, a scope that listed while
// standing by, what its checkpoint does not hold: the sentinel, and the
// keys whose object differs from the record (or has none, or has gone).
func (e *Exporter) compareWarm(s *scope) int {
	queued := 0
	for _, rt := range s.table().routes {
		st := rt.sink.store
		if _, ok := st.Get(sentinelKey(s.id)); !ok {
			st.Put(sentinelKey(s.id), state.Record{Scope: s.name})
		}
		queued += s.primeChanged(rt)
	}
	return queued
}

// primeChanged is prime for a sink whose store may already hold what the
// cache holds (a shared checkpoint followed while standing by): a key
// whose record names the cached version, delivered and settled, is left
// out. It returns how many keys it queued.
func (s *scope) primeChanged(rt route) int {
	t := s.table()
	queued := 0
	for _, obj := range s.informer.GetIndexer().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		k, m := s.keyAndMeta(u)
		if rec, ok := rt.sink.store.Get(k); ok && settled(rec, m.UID, m.ResourceVersion) {
			continue
		}
		if rt.skipInitial && state.PutIfAbsent(rt.sink.store, k, s.baseline(t, u, m, rt.sink.name)) {
			continue
		}
		rt.sink.enqueue(s.itemOf(k), rt.restoreGap)
		queued++
	}
	if rt.restoreGap == nil {
		return queued
	}
	// Records of objects the cache no longer holds: deleted while no
	// leader delivered (or before the old one did).
	rt.sink.store.Range(func(k state.Key, rec state.Record) bool {
		if rec.Scope == s.name && k.GVR == s.id.GVR && !isSentinel(k) && s.get(k) == nil {
			rt.sink.enqueue(s.itemOf(k), rt.restoreGap)
			queued++
		}
		return true
	})
	return queued
}

// settled reports whether rec says the sink holds (uid, rv) and nothing
// about it is in doubt: no send of another version written ahead, not
// provisional, not being deleted.
func settled(rec state.Record, uid, rv string) bool {
	return rec.UID == uid && rec.ResourceVersion == rv && !rec.Provisional && !rec.Deleting &&
		(rec.Sent == nil || rec.Sent.ResourceVersion == rv) // acknowledged: it names what it showed
}

// standingBy reports whether the scope's Exporter waits for Lead.
func (s *scope) standingBy() bool { return s.sh != nil && s.sh.standby.Load() }

// sharer is a store whose records can point at the cache's objects
// (checkpoint.Store.Share).
type sharer interface {
	Share(k state.Key, obj *unstructured.Unstructured) bool
}

// shareEvery is how often a standby points the records it follows at its
// cached objects.
const shareEvery = 10 * time.Second

// shareLoop, while the Exporter stands by, points the records its stores
// follow at the cached objects of the same version, so that a warm
// standby holds each object once rather than its cache and a decoded copy
// of the checkpoint (twice a leader's memory at 100k objects). Records of
// scopes whose rules redact stay as they rest.
func (e *Exporter) shareLoop(ctx context.Context) error {
	t := time.NewTicker(shareEvery)
	defer t.Stop()
	for e.standby.Load() {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		e.shareCaches()
	}
	return nil
}

// shareCaches is one pass of shareLoop; it returns how many records now
// point at cached objects.
func (e *Exporter) shareCaches() int {
	shared := 0
	for _, s := range e.scopeSet() {
		if !s.ready.Load() {
			continue
		}
		t := s.table()
		for _, rt := range t.routes {
			sh, ok := rt.sink.store.(sharer)
			if !ok || rt.sink.redactsAny(s.id.GVR) {
				continue
			}
			for _, obj := range s.informer.GetIndexer().List() {
				if !e.standby.Load() {
					return shared
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					k, _ := s.keyAndMeta(u)
					if sh.Share(k, u) {
						shared++
					}
				}
			}
		}
	}
	return shared
}

// redactsAny reports whether a rule routing to the sink from any of its
// scopes of gvr redacts: a key may be covered by several scopes, and its
// record rests as the rule that delivered it redacted it.
func (r *sinkRunner) redactsAny(gvr schema.GroupVersionResource) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.scopes[gvr] {
		for _, rl := range s.table().rules {
			if rl.RoutesTo(r.name) && rl.Redactor(s.res) != nil {
				return true
			}
		}
	}
	return false
}
