package exporter

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// Backoff of a key whose delivery failed: exponential from retryBase, capped.
const (
	retryBase = 100 * time.Millisecond
	RetryCap  = 30 * time.Second
	// sendTimeout bounds a worker's hand-over of a send to its sink (for a
	// sink with a window, the wait for room in it; else the blocking
	// Send): each send gets between half of it and all of it.
	sendTimeout = 30 * time.Second
	// notSyncedRetry is how soon a key is looked at again when a scope
	// that covers it has not synced yet (its absence proves nothing).
	notSyncedRetry = time.Second
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
	name string
	sink sinks.Sink
	// shown is sink for readers off the workers (health: /readyz and
	// metrics), which a standby's promote sets while they may read.
	shown atomic.Pointer[sinks.Sink]
	store state.Store
	queue workqueue.TypedRateLimitingInterface[item]
	sh    *shared
	log   *zap.Logger

	mu     sync.RWMutex
	scopes map[schema.GroupVersionResource][]*scope

	// pending holds, per key, what is known between notice and delivery.
	pending *pendingSet
	gaps    *gapBook
	// inflight counts items taken from the queue and not yet settled.
	inflight sync.WaitGroup
	commits  committer

	delivered, retries, dropped, filterErrors, gapsSent, recovered atomic.Int64

	// deliveredBy holds the kubefeed_events_delivered_total counter of
	// each (resource, type), and latency the sink's histogram: looking a
	// child up by its label values hashes them on every event.
	deliveredBy sync.Map // deliveredLabels -> prometheus.Counter
	latency     prometheus.Observer

	// snapshotting holds one token while a snapshot runs on this sink.
	snapshotting chan struct{}
}

type deliveredLabels struct {
	gvr schema.GroupVersionResource
	typ string
}

// deliveredCounter is the delivered counter of res and typ.
func (r *sinkRunner) deliveredCounter(res resource.Resource, typ string) prometheus.Counter {
	k := deliveredLabels{res.GVR, typ}
	if c, ok := r.deliveredBy.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := r.deliveredBy.LoadOrStore(k, r.sh.metrics.delivered.WithLabelValues(r.name, resourceLabel(res), typ))
	return c.(prometheus.Counter)
}

func newSinkRunner(sh *shared, name string, s sinks.Sink, store state.Store) *sinkRunner {
	r := &sinkRunner{
		name:  name,
		sink:  s,
		store: store,
		sh:    sh,
		log:   sh.log.Named("sink").With(zap.String("sink", name)),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](retryBase, RetryCap),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "kubefeed_" + name},
		),
		scopes:       map[schema.GroupVersionResource][]*scope{},
		pending:      newPendingSet(),
		snapshotting: make(chan struct{}, 1),
		gaps:         newGapBook(),
		latency:      sh.metrics.latency.WithLabelValues(name),
	}
	r.setSink(s)
	return r
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
	kept := make([]*scope, 0, len(list))
	for _, x := range list {
		if x != s {
			kept = append(kept, x)
		}
	}
	r.scopes[s.id.GVR] = kept
	r.mu.Unlock()
	r.store.Range(func(k state.Key, _ state.Record) bool {
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

// enqueue notes a change of it's key (through g when it was recovered) and
// queues the item.
func (r *sinkRunner) enqueue(it item, g *gap) {
	if g != nil {
		// Held before the key refers to it, so that a worker finishing
		// the key at once cannot release it first.
		r.gaps.retain(g)
	}
	set, released := r.pending.note(it, g, time.Now())
	if g != nil && !set {
		r.gaps.release(g) // the key referred to g already
	}
	for _, old := range released {
		r.gaps.release(old)
	}
	r.queue.Add(it)
}

// oldestPending is when the oldest undelivered change was noticed.
func (r *sinkRunner) oldestPending() (time.Time, bool) { return r.pending.oldest() }

// run runs workers until the queue shuts down, and returns when they all
// stopped. Workers stop once the queue is shut down and empty, but a key
// whose ack was still outstanding goes back into the queue when it settles
// if a change of it was noted meanwhile: run waits for the outstanding
// sends (until ctx ends) and works off such keys too.
func (r *sinkRunner) run(sendCtx context.Context, workers int) {
	for {
		var wg sync.WaitGroup
		for i := 0; i < workers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sd := &sendDeadline{parent: sendCtx}
				defer sd.stop()
				for r.processNext(sendCtx, sd) {
				}
			}()
		}
		wg.Wait()
		if !r.settled(sendCtx) || r.queue.Len() == 0 {
			return
		}
	}
}

// settled waits until every item taken from the queue was settled, or
// ctx ends (false).
func (r *sinkRunner) settled(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// processNext takes one item and starts its delivery. A key's item stays
// processing (not Done) until its send is acknowledged or failed, so the
// queue never hands a key out twice at once and a newer change of a key in
// flight waits for it: per-object order holds with any window.
func (r *sinkRunner) processNext(ctx context.Context, sd *sendDeadline) bool {
	it, quit := r.queue.Get()
	if quit {
		return false
	}
	r.process(ctx, it, sd)
	return true
}

// process starts the delivery of it, an item taken from the queue.
func (r *sinkRunner) process(ctx context.Context, it item, sd *sendDeadline) {
	if it.gap != "" {
		r.inflight.Add(1)
		var err error
		if g := r.gaps.eagerGap(it.gap); g != nil {
			err = r.markersFirst(ctx, g)
		}
		r.settle(ctx, it, err)
		return
	}
	d, err := r.prepare(ctx, it)
	if err != nil {
		r.inflight.Add(1)
		r.settle(ctx, it, err)
		return
	}
	r.send(ctx, d, sd)
}

// sendDeadline is a worker's bound on handing events to its sink: a
// context with SendTimeout, made anew once half of it has passed. One
// context per send cost a timer and a registration with the shared parent
// context, about a tenth of a worker's CPU on a drain.
type sendDeadline struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	renew  time.Time
}

// get returns a context that ends at least SendTimeout/2 from now (or
// with the parent).
func (sd *sendDeadline) get() context.Context {
	if now := time.Now(); sd.ctx == nil || now.After(sd.renew) {
		sd.stop()
		sd.ctx, sd.cancel = context.WithTimeout(sd.parent, sendTimeout)
		sd.renew = now.Add(sendTimeout / 2)
	}
	return sd.ctx
}

func (sd *sendDeadline) stop() {
	if sd.cancel != nil {
		sd.cancel()
	}
}

// settle ends the processing of it: forgotten on success, requeued with
// backoff on error (unless shutting down: the key then stays undelivered
// for the checkpoint), and marked Done.
func (r *sinkRunner) settle(ctx context.Context, it item, err error) {
	defer r.inflight.Done()
	defer r.queue.Done(it)
	switch {
	case err == nil:
		r.queue.Forget(it)
	case ctx.Err() != nil:
	case err == errNotSynced:
		r.queue.Forget(it)
		r.queue.AddAfter(it, notSyncedRetry)
	case err == errBehind, err == errStale:
		// Parked until the scope caught up, or until the next watch
		// event of the key (it stays pending).
		r.queue.Forget(it)
	case isAwaitTombstone(err):
		r.queue.Forget(it)
		r.queue.AddAfter(it, time.Duration(err.(awaitTombstone)))
	default:
		r.retries.Add(1)
		r.sh.metrics.failed.WithLabelValues(r.name).Inc()
		if d, ok := sinks.RetryAfterOf(err); ok && d > 0 {
			r.log.Debug("send failed, retrying after", zap.Stringer("item", it), zap.Duration("after", d), zap.Error(err))
			r.queue.AddAfter(it, d)
			return
		}
		r.log.Warn("send failed, retrying", zap.Stringer("item", it), zap.Int("requeues", r.queue.NumRequeues(it)), zap.Error(err))
		r.queue.AddRateLimited(it)
	}
}

// waitSettled waits, at most timeout, until every item taken from the
// queue was settled (every outstanding ack arrived or failed).
func (r *sinkRunner) waitSettled(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// healthReporter is a sink that can say it is not usable yet
// (sinks.Deferred).
type healthReporter interface{ Health() (bool, string) }

// setSink sets the sink, before the workers run (New, or a standby's
// promote), and shows it to health, which a scrape may call meanwhile.
func (r *sinkRunner) setSink(s sinks.Sink) {
	r.sink = s
	r.shown.Store(&s)
}

// health reports whether the sink is usable and, if not, why.
func (r *sinkRunner) health() (bool, string) {
	if p := r.shown.Load(); p != nil {
		if h, ok := (*p).(healthReporter); ok {
			return h.Health()
		}
	}
	return true, ""
}

func (r *sinkRunner) stats() SinkStats {
	return SinkStats{Delivered: r.delivered.Load(), Retries: r.retries.Load(), Dropped: r.dropped.Load(), FilterErrors: r.filterErrors.Load(), Gaps: r.gapsSent.Load(), Recovered: r.recovered.Load()}
}

func isAwaitTombstone(err error) bool {
	_, ok := err.(awaitTombstone)
	return ok
}
