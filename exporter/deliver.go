package exporter

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// errNotSynced defers a key whose absence cannot be trusted yet: a scope
// that covers it has not finished its first list.
var errNotSynced = errors.New("a scope covering the key has not synced")

// awaitTombstone defers a key whose object vanished before its handler
// stored the final state, by its duration.
type awaitTombstone time.Duration

func (a awaitTombstone) Error() string { return "waiting for the final state of a deleted object" }

// lookup finds the current state of k in this sink's scopes.
func (r *sinkRunner) lookup(k state.Key) plan.Current {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var c plan.Current
	for _, s := range r.scopes[k.GVR] {
		c.Res = s.res
		if !s.covers(k) {
			continue
		}
		if !s.informer.HasSynced() {
			c.Unsynced = true
		}
		if o := s.get(k); o != nil {
			if c.Obj == nil {
				c.Scope = s.name
			}
			c.Obj = o
			c.Rules = appendRules(c.Rules, s.table().rules, r.name)
		}
	}
	if c.Obj == nil {
		// Gone from every scope: any rule whose namespaces cover it may
		// render the deletion (after the rule that delivered it).
		for _, s := range r.scopes[k.GVR] {
			if s.covers(k) {
				c.Rules = appendRules(c.Rules, s.table().rules, r.name)
			}
		}
	}
	return c
}

func appendRules(dst, src []*plan.Rule, sink string) []*plan.Rule {
	if len(dst) == 0 && allRouteInOrder(src, sink) {
		// The common case, one scope whose rules all route here: its own
		// slice, capped so that no append can write into the table.
		return src[:len(src):len(src)]
	}
	for _, rl := range src {
		if !rl.RoutesTo(sink) {
			continue
		}
		i := 0
		for i < len(dst) && dst[i].Index < rl.Index {
			i++
		}
		if i < len(dst) && dst[i] == rl {
			continue
		}
		// A new slice: dst may be a table's own (see above).
		merged := make([]*plan.Rule, 0, len(dst)+1)
		merged = append(append(append(merged, dst[:i]...), rl), dst[i:]...)
		dst = merged
	}
	return dst
}

// allRouteInOrder reports whether every rule of src routes to sink and
// src is in config order.
func allRouteInOrder(src []*plan.Rule, sink string) bool {
	for i, rl := range src {
		if !rl.RoutesTo(sink) || (i > 0 && src[i-1].Index >= rl.Index) {
			return false
		}
	}
	return true
}

// delivery is one key's send: what was planned, and what to record once
// the sink acknowledged it.
type delivery struct {
	it   item
	cur  plan.Current
	snap pending
	out  plan.Outcome
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
	// snapshotDue: the key's snapshot (snap.snapshot) is settled by this
	// send, which carries snapshotEv after out's events (nil: the object
	// is gone or shown by no rule).
	snapshotDue bool
	snapshotEv  *event.Event
}

// prepare plans what to send for k. The gap markers a recovered change
// must follow are sent (and acknowledged) first (markersFirst), so that
// with a window of sends in flight no recovered change of a scope can
// reach the sink before its marker.
func (r *sinkRunner) prepare(ctx context.Context, it item) (*delivery, error) {
	k := it.key()
	cur := r.lookup(k)
	var last *state.Record
	if rec, ok := r.store.Get(k); ok {
		last = &rec
	}
	if cur.Obj == nil && cur.Unsynced {
		return nil, errNotSynced
	}
	if err := r.waitForWatch(it, cur.Obj, last); err != nil {
		return nil, err
	}
	snap := r.pending.snapshot(it)
	tomb := r.sh.tombstones.get(k)
	if cur.Obj == nil && tomb == nil && last != nil && last.UID != "" && !last.Deleting && snap.recovered == nil {
		// Gone live, its final state not stored yet: wait for the handler
		// rather than infer the deletion.
		if after, ok := r.pending.awaitTombstone(it); ok {
			return nil, awaitTombstone(after)
		}
	}
	obs := r.sh.observed.forKey(it)
	_, writesAhead := r.store.(state.Syncer)
	out := plan.Compute(r.sh.origin, k, last, snap.attempted, cur, tomb, snap.recovered != nil, obs, writesAhead)
	if out.FilterErrors > 0 {
		r.filterErrors.Add(int64(out.FilterErrors))
		r.sh.metrics.filterErrors.WithLabelValues(r.name).Add(float64(out.FilterErrors))
		r.log.Debug("filter failed; counted as no match", zap.Stringer("key", k), zap.Int("rules", out.FilterErrors))
	}
	again := false
	if r.replacesIncarnation(last, out) {
		// The deletions first, forgotten durably; the new incarnation next
		// round, provisioned before it is sent.
		gone := cur
		gone.Obj = nil
		out, again = plan.Compute(r.sh.origin, k, last, snap.attempted, gone, tomb, snap.recovered != nil, obs, writesAhead), true
	}
	if snap.recovered != nil && len(out.Events) > 0 {
		for _, g := range append(snap.others[:len(snap.others):len(snap.others)], snap.recovered) {
			if err := r.markersFirst(ctx, g); err != nil {
				return nil, err
			}
		}
	}
	d := &delivery{it: it, cur: cur, snap: snap, out: out, again: again}
	if writesAhead {
		d.ahead = plan.Ahead(last, out)
	}
	r.attachSnapshot(d, last)
	return d, nil
}

// replacesIncarnation reports whether out sends a new incarnation of an
// object together with the deletion of another (a uid change, or the
// retraction of an unacknowledged one) to a checkpointed sink. Such a
// send is split: acknowledged together and killed before the checkpoint
// committed, a restart would know only the old incarnation, and never
// retract the new one the sink holds once it is gone.
func (r *sinkRunner) replacesIncarnation(last *state.Record, out plan.Outcome) bool {
	if _, ok := r.store.(state.Syncer); !ok || out.Record == nil || (last != nil && last.UID == out.Record.UID) {
		return false
	}
	for _, c := range out.Changes {
		if c.Kind == event.Deleted {
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
	if g == nil || d.cur.Obj == nil {
		return nil
	}
	if c := r.lookup(d.it.key()); c.Obj == nil || c.Obj.GetUID() != d.cur.Obj.GetUID() {
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
	if d.ahead != nil && len(d.out.Events) > 0 {
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
	events := d.out.Events
	if d.snapshotEv != nil {
		events = append(events[:len(events):len(events)], d.snapshotEv)
	}
	if len(events) == 0 {
		r.complete(ctx, d, nil)
		return
	}
	if sd == nil {
		sd = &sendDeadline{parent: ctx}
		defer sd.stop()
	}
	r.publish(sd.get(), events, func(err error) { r.complete(ctx, d, err) })
}

// publish hands events to the sink and calls done with the outcome once:
// through the sink's window when it is an AsyncSink, else by a blocking
// Send. Every event a sink gets, a key's or a gap marker, goes through
// here.
func (r *sinkRunner) publish(ctx context.Context, events []*event.Event, done func(error)) {
	if as, ok := r.sink.(sinks.AsyncSink); ok {
		if err := as.Publish(ctx, events, done); err != nil {
			done(err)
		}
		return
	}
	done(r.sink.Send(ctx, events))
}

// complete records the outcome of d's send: on success (or a permanent
// error) the delivered state moves and the key is finished; on a
// retryable error the attempted state is remembered and the key requeued.
// It runs on a worker or on the sink's ack goroutine, and never blocks on
// I/O: a checkpoint group commit runs on the runner's committer.
func (r *sinkRunner) complete(ctx context.Context, d *delivery, err error) {
	k, out := d.it.key(), d.out
	if err != nil && !sinks.IsPermanent(err) {
		r.pending.failed(d.it, out.Record)
		r.settle(ctx, d.it, err)
		return
	}
	if err != nil && len(out.Events) == 0 && d.snapshotEv != nil {
		r.dropped.Add(1)
		r.sh.metrics.dropped.WithLabelValues(r.name).Inc()
		r.log.Error("permanent send error, snapshot event dropped for this sink", zap.Stringer("key", k), zap.Error(err))
	}
	if n := len(out.Events); n > 0 {
		if err != nil {
			r.dropped.Add(int64(n))
			r.sh.metrics.dropped.WithLabelValues(r.name).Add(float64(n))
			r.log.Error("permanent send error, events dropped for this sink", zap.Stringer("key", k), zap.Int("events", n), zap.Error(err))
		} else {
			r.delivered.Add(int64(n))
			for _, ev := range out.Events {
				if c := ev.Change(); c != "" {
					r.deliveredCounter(d.cur.Res, plan.EventType(c)).Inc()
				}
			}
		}
		if d.snap.recovered != nil {
			r.recovered.Add(int64(n))
			r.sh.metrics.recovered.WithLabelValues(r.name).Add(float64(n))
		}
	}
	if out.Forget {
		r.store.Delete(k)
	} else if out.Record != nil {
		r.store.Put(k, *out.Record)
	}
	noticed, released := r.pending.finish(d.it, d.snap)
	for _, g := range released {
		r.gaps.release(g)
	}
	r.snapshotSettled(d, err == nil)
	if len(out.Events) > 0 && !noticed.IsZero() {
		r.latency.Observe(time.Since(noticed).Seconds())
	}
	if d.again {
		r.enqueue(d.it, r.againGap(d))
	}
	if _, ok := r.store.(state.Syncer); ok && len(out.Events) > 0 && out.Changes[0].Kind != event.Modified {
		r.commitThenSettle(ctx, d.it)
		return
	}
	r.settle(ctx, d.it, nil)
}
