package exporter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/exporter/diff"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Backoff of a key whose delivery failed: exponential from RetryBase, capped.
const (
	RetryBase   = 100 * time.Millisecond
	RetryCap    = 30 * time.Second
	SendTimeout = 30 * time.Second
)

// SinkStats counts what happened at one sink.
type SinkStats struct {
	Delivered int64 // events acknowledged
	Retries   int64 // sends that failed and were requeued
	Dropped   int64 // events dropped after a permanent error
	// FilterErrors counts filter expressions that failed at run time (a
	// missing field): the change then did not match that rule.
	FilterErrors int64
	Gaps         int64 // gap markers sent
	Recovered    int64 // events sent for changes seen through a restart or relist
}

// sinkRunner is one sink's queue, workers and delivered state: a failing
// sink holds back only its own runner.
type sinkRunner struct {
	name  string
	sink  sinks.Sink
	store Store
	queue workqueue.TypedRateLimitingInterface[Key]
	ex    *Exporter
	log   *zap.Logger

	mu     sync.RWMutex
	scopes map[schema.GroupVersionResource][]*scope

	// attempted holds states whose send failed retryably: the sink may have
	// stored them anyway (a lost ack), so a later deletion must still be
	// sent even if nothing was acknowledged for the key.
	attemptedMu sync.Mutex
	attempted   map[Key]*unstructured.Unstructured

	// recovering maps keys seen through a restart or relist to the gap
	// marker of their scope; eager holds gap markers queued on their own.
	recMu      sync.Mutex
	recovering map[Key]*gap
	eager      map[Key]*gap
	sentGaps   map[string]bool // ids of gap markers this sink acknowledged
	gapMu      sync.Mutex      // held while a batch carrying a marker is sent

	// firstSeen: when the change a queued key stands for was first noticed
	// (for delivery latency and the oldest-pending gauge).
	pendingMu sync.Mutex
	firstSeen map[Key]time.Time

	delivered, retries, dropped, filterErrors, gaps, recovered atomic.Int64
}

func newSinkRunner(ex *Exporter, name string, s sinks.Sink, store Store) *sinkRunner {
	return &sinkRunner{
		name:  name,
		sink:  s,
		store: store,
		ex:    ex,
		log:   ex.log.Named("sink").With(zap.String("sink", name)),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[Key](RetryBase, RetryCap),
			workqueue.TypedRateLimitingQueueConfig[Key]{Name: "kubefeed_" + name},
		),
		scopes:     map[schema.GroupVersionResource][]*scope{},
		attempted:  map[Key]*unstructured.Unstructured{},
		recovering: map[Key]*gap{},
		eager:      map[Key]*gap{},
		sentGaps:   map[string]bool{},
		firstSeen:  map[Key]time.Time{},
	}
}

// scopeList returns the scopes this sink is fed by.
func (r *sinkRunner) scopeList() []*scope {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*scope
	for _, list := range r.scopes {
		out = append(out, list...)
	}
	return out
}

func (r *sinkRunner) addScope(s *scope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, have := range r.scopes[s.id.GVR] {
		if have == s {
			return
		}
	}
	r.scopes[s.id.GVR] = append(r.scopes[s.id.GVR], s)
}

// removeScope drops a stopped scope and forgets what was delivered from it
// that no other scope of this sink still covers.
func (r *sinkRunner) removeScope(s *scope) {
	r.mu.Lock()
	list := r.scopes[s.id.GVR]
	kept := list[:0]
	for _, x := range list {
		if x != s {
			kept = append(kept, x)
		}
	}
	r.scopes[s.id.GVR] = kept
	r.mu.Unlock()
	r.store.Range(func(k Key, _ Record) bool {
		if k.GVR != s.id.GVR || !s.covers(k) {
			return true
		}
		r.mu.RLock()
		covered := false
		for _, x := range r.scopes[k.GVR] {
			covered = covered || x.covers(k)
		}
		r.mu.RUnlock()
		if !covered {
			r.store.Delete(k)
		}
		return true
	})
}

func (r *sinkRunner) enqueue(k Key) {
	r.pendingMu.Lock()
	if _, ok := r.firstSeen[k]; !ok {
		r.firstSeen[k] = time.Now()
	}
	r.pendingMu.Unlock()
	r.queue.Add(k)
}

// done ends the pending time of a key; it returns when the change was first
// noticed (zero if unknown).
func (r *sinkRunner) done(k Key) time.Time {
	r.pendingMu.Lock()
	defer r.pendingMu.Unlock()
	t := r.firstSeen[k]
	delete(r.firstSeen, k)
	return t
}

// oldestPending is when the oldest undelivered change was noticed.
func (r *sinkRunner) oldestPending() (time.Time, bool) {
	r.pendingMu.Lock()
	defer r.pendingMu.Unlock()
	var oldest time.Time
	for _, t := range r.firstSeen {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest, !oldest.IsZero()
}

// run runs workers until the queue shuts down.
func (r *sinkRunner) run(sendCtx context.Context, workers int, wg *sync.WaitGroup) {
	if wg == nil {
		wg = &sync.WaitGroup{}
		defer wg.Wait()
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.processNext(sendCtx) {
			}
		}()
	}
}

func (r *sinkRunner) processNext(ctx context.Context) bool {
	k, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(k)
	err := r.sync(ctx, k)
	switch {
	case err == nil:
		r.queue.Forget(k)
		r.done(k)
	case ctx.Err() != nil:
		// Shutting down: the key stays undelivered for the checkpoint.
	default:
		r.retries.Add(1)
		r.ex.metrics.failed.WithLabelValues(r.name).Inc()
		requeues := r.queue.NumRequeues(k)
		if d, ok := sinks.RetryAfterOf(err); ok {
			r.log.Debug("send failed, retrying after", zap.Stringer("key", k), zap.Duration("after", d), zap.Error(err))
			r.queue.AddAfter(k, d)
			return true
		}
		r.log.Warn("send failed, retrying", zap.Stringer("key", k), zap.Int("requeues", requeues), zap.Error(err))
		r.queue.AddRateLimited(k)
	}
	return true
}

// markRecovered records that k was seen through a restart or relist: its
// next changes are marked recovered, after g.
func (r *sinkRunner) markRecovered(k Key, g *gap) {
	r.recMu.Lock()
	r.recovering[k] = g
	r.recMu.Unlock()
}

func (r *sinkRunner) takeRecovered(k Key) *gap {
	r.recMu.Lock()
	defer r.recMu.Unlock()
	g := r.recovering[k]
	delete(r.recovering, k)
	return g
}

// sendGapNow queues a gap marker to be sent even if nothing changed.
func (r *sinkRunner) sendGapNow(g *gap) {
	k := gapKey(g)
	r.recMu.Lock()
	r.eager[k] = g
	r.recMu.Unlock()
	r.queue.Add(k)
}

func (r *sinkRunner) syncGap(ctx context.Context, k Key) error {
	r.recMu.Lock()
	g := r.eager[k]
	r.recMu.Unlock()
	if g == nil || r.gapSent(g) {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	if err := r.sink.Send(sctx, []*event.Event{g.ev}); err != nil && !sinks.IsPermanent(err) {
		return err
	}
	r.markGapSent(g)
	r.recMu.Lock()
	delete(r.eager, k)
	r.recMu.Unlock()
	return nil
}

// gapSent reports whether this sink already has the marker (several relists
// of one outage share it: the id hashes the scope, reason and start).
func (r *sinkRunner) gapSent(g *gap) bool {
	r.recMu.Lock()
	defer r.recMu.Unlock()
	return r.sentGaps[g.ev.ID]
}

func (r *sinkRunner) markGapSent(g *gap) {
	r.recMu.Lock()
	if !r.sentGaps[g.ev.ID] {
		r.sentGaps[g.ev.ID] = true
		r.gaps.Add(1)
		if d, ok := g.ev.Data.(*event.GapData); ok {
			r.ex.metrics.gaps.WithLabelValues(r.name, d.Reason).Inc()
		}
	}
	r.recMu.Unlock()
}

// lookup finds the current state of k in this sink's scopes, the scope it
// was found in, and the rules through which it reaches this sink, in
// config order.
func (r *sinkRunner) lookup(k Key) (*unstructured.Unstructured, []*rule, Resource, string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var cur *unstructured.Unstructured
	var rules []*rule
	var res Resource
	var scope string
	for _, s := range r.scopes[k.GVR] {
		res = s.res
		if o := s.get(k); o != nil {
			if cur == nil {
				scope = s.name
			}
			cur = o
			rules = appendRules(rules, s.rules, r.name)
		}
	}
	if cur == nil {
		// Gone from every scope: any rule whose namespaces cover it decides.
		for _, s := range r.scopes[k.GVR] {
			if s.covers(k) {
				rules = appendRules(rules, s.rules, r.name)
			}
		}
	}
	return cur, rules, res, scope
}

func appendRules(dst, src []*rule, sink string) []*rule {
	for _, rl := range src {
		if !rl.routesTo(sink) {
			continue
		}
		i := 0
		for i < len(dst) && dst[i].index < rl.index {
			i++
		}
		if i < len(dst) && dst[i] == rl {
			continue
		}
		dst = append(dst[:i], append([]*rule{rl}, dst[i:]...)...)
	}
	return dst
}

// sync delivers what changed for k since the sink's last delivery.
func (r *sinkRunner) sync(ctx context.Context, k Key) error {
	if isGapKey(k) {
		return r.syncGap(ctx, k)
	}
	cur, rules, res, scope := r.lookup(k)
	var last *Record
	if rec, ok := r.store.Get(k); ok {
		last = &rec
	}
	attempt := r.attemptedState(k)
	changes := decide(last, cur, r.ex.tombstones.get(k))
	if len(changes) == 0 && last == nil && cur == nil && attempt != nil {
		// Never acknowledged, but perhaps stored: say it is gone.
		changes = []change{deleted(recordOf(attempt), r.ex.tombstones.get(k))}
	}
	if len(changes) == 0 {
		return nil
	}
	g := r.takeRecovered(k)
	if g != nil {
		for i := range changes {
			changes[i].recovered = true
		}
	}
	now := r.ex.now()
	events := make([]*event.Event, 0, len(changes)+1)
	for _, c := range changes {
		var ops []diff.Op
		if c.kind == event.Modified && c.prev.Object != nil {
			ops = diff.Diff(c.prev.Object.Object, c.obj.Object)
		}
		for _, rl := range rules {
			ev, err := render(r.ex.cfg.Cluster, res, k, c, ops, rl, now)
			if err != nil {
				r.filterErrors.Add(1)
				r.ex.metrics.filterErrors.WithLabelValues(r.name).Inc()
				r.log.Debug("filter failed; counted as no match", zap.Int("rule", rl.index), zap.Stringer("key", k), zap.Error(err))
			}
			if ev != nil {
				events = append(events, ev)
				break
			}
		}
	}
	gapFirst := false
	if g != nil && len(events) > 0 {
		// One worker sends the marker; the others wait for it, so that no
		// recovered change of the scope overtakes it.
		r.gapMu.Lock()
		if gapFirst = !r.gapSent(g); !gapFirst {
			r.gapMu.Unlock()
		} else {
			defer r.gapMu.Unlock()
		}
	}
	if gapFirst {
		// The consumer learns that it may have missed versions before it
		// sees the first change recovered in this scope.
		events = append([]*event.Event{g.ev}, events...)
	}
	if len(events) > 0 {
		sctx, cancel := context.WithTimeout(ctx, SendTimeout)
		err := r.sink.Send(sctx, events)
		cancel()
		if err != nil {
			if !sinks.IsPermanent(err) {
				if cur != nil {
					r.setAttempted(k, cur)
				}
				if g != nil {
					r.markRecovered(k, g)
				}
				return err
			}
			r.dropped.Add(int64(len(events)))
			r.ex.metrics.dropped.WithLabelValues(r.name).Add(float64(len(events)))
			r.log.Error("permanent send error, events dropped for this sink", zap.Stringer("key", k), zap.Int("events", len(events)), zap.Error(err))
		} else {
			r.delivered.Add(int64(len(events)))
			rl := resourceLabel(res)
			for _, ev := range events {
				if c := ev.Change(); c != "" {
					r.ex.metrics.delivered.WithLabelValues(r.name, rl, eventType(c)).Inc()
				}
			}
			if t := r.done(k); !t.IsZero() {
				r.ex.metrics.latency.WithLabelValues(r.name).Observe(time.Since(t).Seconds())
			}
		}
		if gapFirst {
			r.markGapSent(g)
		}
		if g != nil {
			r.recovered.Add(int64(len(events)))
			r.ex.metrics.recovered.WithLabelValues(r.name).Add(float64(len(events)))
		}
	}
	if cur == nil {
		r.store.Delete(k)
	} else {
		rec := recordOf(cur)
		rec.Scope = scope
		r.store.Put(k, rec)
	}
	if sy, ok := r.store.(Syncer); ok && len(events) > 0 && changes[0].kind != event.Modified {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := sy.Sync(sctx); err != nil {
			r.log.Warn("checkpoint not yet written; continuing", zap.Stringer("key", k), zap.Error(err))
		}
		cancel()
	}
	if attempt != nil {
		r.setAttempted(k, nil)
	}
	return nil
}

func (r *sinkRunner) attemptedState(k Key) *unstructured.Unstructured {
	r.attemptedMu.Lock()
	defer r.attemptedMu.Unlock()
	return r.attempted[k]
}

func (r *sinkRunner) setAttempted(k Key, obj *unstructured.Unstructured) {
	r.attemptedMu.Lock()
	defer r.attemptedMu.Unlock()
	if obj == nil {
		delete(r.attempted, k)
		return
	}
	r.attempted[k] = obj
}

func (r *sinkRunner) stats() SinkStats {
	return SinkStats{Delivered: r.delivered.Load(), Retries: r.retries.Load(), Dropped: r.dropped.Load(), FilterErrors: r.filterErrors.Load(), Gaps: r.gaps.Load(), Recovered: r.recovered.Load()}
}
