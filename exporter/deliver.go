package exporter

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// errNotSynced defers a key whose absence cannot be trusted yet: a scope
// that covers it has not finished its first list.
var errNotSynced = errors.New("a scope covering the key has not synced")

// errAwaitGap: the key's recovered change waits for its gap marker's ack,
// which queues the key again.
var errAwaitGap = errors.New("waiting for the gap marker to be acknowledged")

// awaitTombstone defers a key whose object vanished before its handler
// stored the final state, by its duration.
type awaitTombstone time.Duration

func (a awaitTombstone) Error() string { return "waiting for the final state of a deleted object" }

// current is what the informers hold of a key for one sink.
type current struct {
	obj *unstructured.Unstructured // nil: in no scope of the sink
	// rules through which it reaches the sink, config order. It may be a
	// scope table's own slice (appendRules): read only.
	rules []*rule
	res   resource.Resource
	scope string // name of the first scope holding it
	// unsynced: a scope covering the key has not synced, so obj == nil
	// proves nothing.
	unsynced bool
}

// lookup finds the current state of k in this sink's scopes.
func (r *sinkRunner) lookup(k state.Key) current {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var c current
	for _, s := range r.scopes[k.GVR] {
		c.res = s.res
		if !s.covers(k) {
			continue
		}
		if !s.informer.HasSynced() {
			c.unsynced = true
		}
		if o := s.get(k); o != nil {
			if c.obj == nil {
				c.scope = s.name
			}
			c.obj = o
			c.rules = appendRules(c.rules, s.table().rules, r.name)
		}
	}
	if c.obj == nil {
		// Gone from every scope: any rule whose namespaces cover it may
		// render the deletion (after the rule that delivered it).
		for _, s := range r.scopes[k.GVR] {
			if s.covers(k) {
				c.rules = appendRules(c.rules, s.table().rules, r.name)
			}
		}
	}
	return c
}

func appendRules(dst, src []*rule, sink string) []*rule {
	if len(dst) == 0 && allRouteInOrder(src, sink) {
		// The common case, one scope whose rules all route here: its own
		// slice, capped so that no append can write into the table.
		return src[:len(src):len(src)]
	}
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
		// A new slice: dst may be a table's own (see above).
		merged := make([]*rule, 0, len(dst)+1)
		merged = append(append(append(merged, dst[:i]...), rl), dst[i:]...)
		dst = merged
	}
	return dst
}

// allRouteInOrder reports whether every rule of src routes to sink and
// src is in config order.
func allRouteInOrder(src []*rule, sink string) bool {
	for i, rl := range src {
		if !rl.routesTo(sink) || (i > 0 && src[i-1].index >= rl.index) {
			return false
		}
	}
	return true
}

// delivery is one key's send: what was planned, and what to record once
// the sink acknowledged it.
type delivery struct {
	it item
	// gap, for a gap item, is the marker sent (nil: acknowledged
	// meanwhile); the rest is then zero but for out.events.
	gap  *gap
	cur  current
	snap pending
	out  outcome
	// again: only the deletions of a replaced incarnation were sent; the
	// key is queued again for the new one.
	again bool
	// ahead, for a checkpointed sink, is the record made durable before
	// the events are sent (nil: none), so that a kubefeed killed after the
	// sink got them but before their delivered state was written sends the
	// same events again rather than others: it would otherwise not know an
	// object the sink holds (and miss its deletion), infer a deletion it
	// already sent under another id, or send a change with another time.
	ahead *state.Record
}

// prepare plans what to send for k. A recovered change whose gap marker
// was not acknowledged yet is not planned: the key waits for the marker
// (errAwaitGap, gapBook.await), so that with a window of sends in flight
// no recovered change of a scope can reach the sink before its marker.
func (r *sinkRunner) prepare(ctx context.Context, it item) (*delivery, error) {
	k := it.key()
	cur := r.lookup(k)
	var last *state.Record
	if rec, ok := r.store.Get(k); ok {
		last = &rec
	}
	if cur.obj == nil && cur.unsynced {
		return nil, errNotSynced
	}
	snap := r.pending.snapshot(it)
	tomb := r.ex.tombstones.get(k)
	if cur.obj == nil && tomb == nil && last != nil && last.UID != "" && !last.Deleting && snap.recovered == nil {
		// Gone live, its final state not stored yet: wait for the handler
		// rather than infer the deletion.
		if after, ok := r.pending.awaitTombstone(it); ok {
			return nil, awaitTombstone(after)
		}
	}
	obs := r.ex.observed.forKey(it)
	_, writesAhead := r.store.(state.Syncer)
	out := plan(r.ex.origin, k, last, snap.attempted, cur, tomb, snap.recovered != nil, obs, writesAhead)
	if out.filterErrors > 0 {
		r.filterErrors.Add(int64(out.filterErrors))
		r.ex.metrics.filterErrors.WithLabelValues(r.name).Add(float64(out.filterErrors))
		r.log.Debug("filter failed; counted as no match", zap.Stringer("key", k), zap.Int("rules", out.filterErrors))
	}
	again := false
	if r.replacesIncarnation(last, out) {
		// The deletions first, forgotten durably; the new incarnation next
		// round, provisioned before it is sent.
		gone := cur
		gone.obj = nil
		out, again = plan(r.ex.origin, k, last, snap.attempted, gone, tomb, snap.recovered != nil, obs, writesAhead), true
	}
	if g := snap.recovered; g != nil && len(out.events) > 0 && r.gaps.await(g, it) {
		// Parked until the marker's ack queues the key again.
		r.queue.Add(gapItem(g))
		return nil, errAwaitGap
	}
	d := &delivery{it: it, cur: cur, snap: snap, out: out, again: again}
	if writesAhead {
		d.ahead = ahead(last, out)
	}
	return d, nil
}

// replacesIncarnation reports whether out sends a new incarnation of an
// object together with the deletion of another (a uid change, or the
// retraction of an unacknowledged one) to a checkpointed sink. Such a
// send is split: acknowledged together and killed before the checkpoint
// committed, a restart would know only the old incarnation, and never
// retract the new one the sink holds once it is gone.
func (r *sinkRunner) replacesIncarnation(last *state.Record, out outcome) bool {
	if _, ok := r.store.(state.Syncer); !ok || out.record == nil || (last != nil && last.UID == out.record.UID) {
		return false
	}
	for _, c := range out.changes {
		if c.kind == event.Deleted {
			return true
		}
	}
	return false
}

// againGap is the gap the second step of a split send is recovered
// through: the first step's, while the incarnation it was planned for is
// still the current one. A newer incarnation (or the deletion) was seen
// live while the first step was in flight, and is not labelled recovered.
func (r *sinkRunner) againGap(d *delivery) *gap {
	g := d.snap.recovered
	if g == nil || d.cur.obj == nil {
		return nil
	}
	if c := r.lookup(d.it.key()); c.obj == nil || c.obj.GetUID() != d.cur.obj.GetUID() {
		return nil
	}
	return g
}

// send hands d's events to the sink (bounded by sd, a worker's deadline;
// nil: one for this send) and arranges for complete to run once
// they are acknowledged: through the sink's window when it is an
// AsyncSink, else by a blocking Send.
func (r *sinkRunner) send(ctx context.Context, d *delivery, sd *sendDeadline) {
	r.inflight.Add(1)
	if d.ahead != nil && len(d.out.events) > 0 {
		// Written ahead: sent by the committer once durable.
		r.store.Put(d.it.key(), *d.ahead)
		r.sendAfterCommit(ctx, d)
		return
	}
	r.dispatch(ctx, d, sd)
}

// dispatch is send once the item is counted in flight (and, for a
// checkpointed sink, its record written ahead is durable).
func (r *sinkRunner) dispatch(ctx context.Context, d *delivery, sd *sendDeadline) {
	events := d.out.events
	if len(events) == 0 {
		r.complete(ctx, d, nil)
		return
	}
	if sd == nil {
		sd = &sendDeadline{parent: ctx}
		defer sd.stop()
	}
	sctx := sd.get()
	if as, ok := r.sink.(sinks.AsyncSink); ok {
		if err := as.Publish(sctx, events, func(err error) { r.complete(ctx, d, err) }); err != nil {
			r.complete(ctx, d, err)
		}
		return
	}
	r.complete(ctx, d, r.sink.Send(sctx, events))
}

// complete records the outcome of d's send: on success (or a permanent
// error) the delivered state moves and the key is finished; on a
// retryable error the attempted state is remembered and the key requeued.
// It runs on a worker or on the sink's ack goroutine, and never blocks on
// I/O: a checkpoint group commit runs on the runner's committer.
func (r *sinkRunner) complete(ctx context.Context, d *delivery, err error) {
	k, out := d.it.key(), d.out
	if d.it.gap != "" {
		r.completeGap(ctx, d, err)
		return
	}
	if err != nil && !sinks.IsPermanent(err) {
		r.pending.failed(d.it, out.record)
		r.settle(ctx, d.it, err)
		return
	}
	if n := len(out.events); n > 0 {
		if err != nil {
			r.dropped.Add(int64(n))
			r.ex.metrics.dropped.WithLabelValues(r.name).Add(float64(n))
			r.log.Error("permanent send error, events dropped for this sink", zap.Stringer("key", k), zap.Int("events", n), zap.Error(err))
		} else {
			r.delivered.Add(int64(n))
			for _, ev := range out.events {
				if c := ev.Change(); c != "" {
					r.deliveredCounter(d.cur.res, eventType(c)).Inc()
				}
			}
		}
		if d.snap.recovered != nil {
			r.recovered.Add(int64(n))
			r.ex.metrics.recovered.WithLabelValues(r.name).Add(float64(n))
		}
	}
	if out.forget {
		r.store.Delete(k)
	} else if out.record != nil {
		r.store.Put(k, *out.record)
	}
	noticed := r.pending.finish(d.it, d.snap)
	if len(out.events) > 0 && !noticed.IsZero() {
		r.latency.Observe(time.Since(noticed).Seconds())
	}
	if d.again {
		r.enqueue(d.it, r.againGap(d))
	}
	if _, ok := r.store.(state.Syncer); ok && len(out.events) > 0 && out.changes[0].kind != event.Modified {
		r.commitThenSettle(ctx, d.it)
		return
	}
	r.settle(ctx, d.it, nil)
}

// completeGap records the outcome of a gap marker's send: a retryable
// error sends it again (the keys waiting for it keep waiting); else it is
// acknowledged, or dropped for good, and the waiting keys go on.
func (r *sinkRunner) completeGap(ctx context.Context, d *delivery, err error) {
	if d.gap == nil {
		r.settle(ctx, d.it, nil)
		return
	}
	if err != nil && !sinks.IsPermanent(err) {
		r.settle(ctx, d.it, err)
		return
	}
	if err != nil {
		r.dropped.Add(1)
		r.ex.metrics.dropped.WithLabelValues(r.name).Inc()
		r.log.Error("permanent send error, gap marker dropped for this sink", zap.String("gap", d.gap.ev.ID), zap.Error(err))
	} else {
		r.delivered.Add(1)
	}
	r.gapSent(d.gap)
	r.settle(ctx, d.it, nil)
}
