package exporter

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks"
)

// errNotSynced defers a key whose absence cannot be trusted yet: a scope
// that covers it has not finished its first list.
var errNotSynced = errors.New("a scope covering the key has not synced")

// current is what the informers hold of a key for one sink.
type current struct {
	obj *unstructured.Unstructured // nil: in no scope of the sink
	// rules through which it reaches the sink, config order. It may be a
	// scope table's own slice (appendRules): read only.
	rules []*rule
	res   Resource
	scope string // name of the first scope holding it
	// unsynced: a scope covering the key has not synced, so obj == nil
	// proves nothing.
	unsynced bool
}

// lookup finds the current state of k in this sink's scopes.
func (r *sinkRunner) lookup(k Key) current {
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

// outcome is what a plan decided: the events to send and the delivered
// state to record once they are acknowledged.
type outcome struct {
	events  []*event.Event
	changes []change
	// record is the new delivered state; nil with forget set: the key is
	// gone for this sink.
	record *Record
	forget bool
	// filterErrors counts rules whose filter failed at run time.
	filterErrors int
	// shown is, per event, the change it shows (events of gap markers
	// aside): what a record written ahead of the send keeps (ahead).
	shown []shownChange
}

// shownChange is the change one event shows.
type shownChange struct {
	c                change
	rule             *rule
	redact           *filters.Redactor
	uid, rv          string
	time             time.Time
	recoveredInEvent bool
	// patch and changedPaths, of a modification, are what its event
	// carried.
	patch        []jsonpatch.Op
	changedPaths []string
}

// plan decides what to send for one key: a pure function of the sink's
// last delivered state, what may have reached it unacknowledged, the
// current state and the deleted object's final state.
//
// Each event carries the time its version was first observed (obs); a
// change that a record written ahead of its send describes (Record.Sent)
// is rendered as it was sent: the same time and recovered mark.
//
// With ahead set (a checkpointed sink) the outcome also says which change
// each event shows (shown), for the record written ahead of the send.
func plan(o origin, k Key, last *Record, attempted *Record, cur current, tomb *tombstone, recovered bool, obs observer, ahead bool) outcome {
	var out outcome
	changes := decide(last, cur.obj, tomb)
	if attempted != nil && attempted.UID != "" && (last == nil || attempted.UID != last.UID) && (cur.obj == nil || string(cur.obj.GetUID()) != attempted.UID) {
		// A send of another incarnation failed: the sink may hold it (a lost
		// ack), so it is retracted after what was acknowledged is.
		retract := deleted(*attempted, tomb)
		i := 0
		for i < len(changes) && changes[i].kind == event.Deleted {
			i++
		}
		changes = append(changes[:i], append([]change{retract}, changes[i:]...)...)
	}
	if recovered {
		for i := range changes {
			changes[i].recovered = true
		}
	}
	out.changes = changes
	var curMeta objMeta // read once: render and the record both need it
	if cur.obj != nil {
		curMeta = metaOf(cur.obj)
	}
	var delivering *rule
	for _, c := range changes {
		rules := cur.rules
		if c.kind == event.Deleted {
			rules = deletionRules(cur.rules, c.rule, c.obj)
		}
		m := curMeta
		if c.obj != cur.obj {
			m = metaOf(c.obj)
		}
		del := c.kind == event.Deleted
		var at time.Time
		if s, ok := last.sent(m.uid, m.resourceVersion, del); ok {
			at, c.recovered = s.Time, s.Recovered
			if c.kind == event.Modified && s.Patch != nil {
				c.replay = s
			}
		} else {
			at = obs.at(m.uid, m.resourceVersion, del)
		}
		for _, rl := range rules {
			ev, err := render(o, cur.res, k, c, m, rl, at)
			if err != nil {
				out.filterErrors++
			}
			if ev != nil {
				out.events = append(out.events, ev)
				if ahead {
					sc := shownChange{c: c, rule: rl, redact: rl.redactor(cur.res), uid: m.uid, rv: m.resourceVersion, time: at, recoveredInEvent: c.recovered}
					if cd, ok := ev.Data.(*event.ChangeData); ok && c.kind == event.Modified {
						sc.patch, sc.changedPaths = cd.Patch, cd.ChangedPaths
					}
					out.shown = append(out.shown, sc)
				}
				if c.kind != event.Deleted {
					delivering = rl
				}
				break
			}
		}
	}
	if cur.obj == nil {
		out.forget = true
		return out
	}
	rec := recordFrom(cur.obj, curMeta)
	rec.Scope = cur.scope
	switch {
	case delivering != nil:
		rec.Rule = delivering.index + 1
	case last != nil && last.UID == rec.UID && hasRule(cur.rules, last.Rule):
		// Nothing shown (filtered or ignored): the record keeps the rule
		// that last delivered the object.
		rec.Rule = last.Rule
	case len(cur.rules) > 0:
		// Unknown (restored from a checkpoint, or the rule left the
		// config): the first rule that selects the object now.
		rec.Rule = cur.rules[0].index + 1
	}
	for _, rl := range cur.rules {
		if rl.index+1 == rec.Rule {
			rec.Redact = rl.redactor(cur.res)
		}
	}
	for _, s := range out.shown {
		if s.c.kind != event.Deleted && s.uid == rec.UID && s.rv == rec.ResourceVersion {
			// A checkpoint keeps when the delivered version was observed:
			// after a restart, a sink that had not got it yet sends it
			// with the time the others did.
			rec.Sent = &Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
		}
	}
	out.record = &rec
	return out
}

// deletionRules puts the rule that delivered the object first: its
// redaction applies to the final state too. When that rule is known and
// still routes here, no other rule renders the deletion.
func deletionRules(rules []*rule, delivered int, final *unstructured.Unstructured) []*rule {
	if hasRule(rules, delivered) {
		for _, rl := range rules {
			if rl.index+1 == delivered {
				return []*rule{rl}
			}
		}
	}
	// Unknown: the rules whose label selector selects the final state,
	// never one that only shares the namespace.
	var selecting []*rule
	for _, rl := range rules {
		if rl.selects(final) {
			selecting = append(selecting, rl)
		}
	}
	if len(selecting) > 0 {
		return selecting
	}
	return rules
}

// ahead is the record to write before out is sent (nil: none): for the
// deletion of the incarnation the sink holds, that incarnation's final
// state marked Deleting; for an object new to the sink (or offered again),
// its state marked Provisional; for a modification, the delivered state
// with the change it is about to receive. Each says what was sent (Sent).
func ahead(last *Record, out outcome) *Record {
	sentOf := func(s *shownChange) *Sent {
		return &Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
	}
	var add, mod *shownChange
	for i := range out.shown {
		s := &out.shown[i]
		switch s.c.kind {
		case event.Deleted:
			if last == nil || s.uid != last.UID {
				continue // a retraction of an unacknowledged incarnation
			}
			return &Record{UID: s.uid, ResourceVersion: s.rv, Object: s.c.obj, Scope: last.Scope, Rule: s.rule.index + 1,
				Redact: s.redact, AtRest: last.AtRest && s.c.obj == last.Object, Deleting: true, Sent: sentOf(s)}
		case event.Added:
			add = s
		case event.Modified:
			mod = s
		}
	}
	switch {
	case add != nil && out.record != nil && out.record.UID == add.uid:
		rec := *out.record
		rec.Provisional, rec.Sent = true, sentOf(add)
		return &rec
	case mod != nil && last != nil && last.UID == mod.uid:
		rec := *last
		rec.Sent = sentOf(mod)
		rec.Sent.Patch, rec.Sent.ChangedPaths = mod.patch, mod.changedPaths
		if rec.Sent.Patch == nil {
			rec.Sent.Patch = []jsonpatch.Op{} // sent without a patch: sent so again
		}
		return &rec
	}
	return nil
}

func hasRule(rules []*rule, idx int) bool {
	for _, rl := range rules {
		if rl.index+1 == idx {
			return true
		}
	}
	return false
}

// delivery is one key's send: what was planned, and what to record once
// the sink acknowledged it.
type delivery struct {
	it   item
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
	ahead *Record
}

// prepare plans what to send for k. A gap marker that must precede the
// key's recovered change is sent (and acknowledged) first, so that with a
// window of sends in flight no recovered change of a scope can reach the
// sink before its marker.
func (r *sinkRunner) prepare(ctx context.Context, it item) (*delivery, error) {
	k := it.key()
	cur := r.lookup(k)
	var last *Record
	if rec, ok := r.store.Get(k); ok {
		last = &rec
	}
	if cur.obj == nil && cur.unsynced {
		return nil, errNotSynced
	}
	snap := r.pending.snapshot(it)
	tomb := r.ex.tombstones.get(k)
	obs := r.ex.observed.forKey(it)
	_, writesAhead := r.store.(Syncer)
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
	if g := snap.recovered; g != nil && len(out.events) > 0 {
		if err := r.sendGapFirst(ctx, g); err != nil {
			return nil, err
		}
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
func (r *sinkRunner) replacesIncarnation(last *Record, out outcome) bool {
	if _, ok := r.store.(Syncer); !ok || out.record == nil || (last != nil && last.UID == out.record.UID) {
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
	if _, ok := r.store.(Syncer); ok && len(out.events) > 0 && out.changes[0].kind != event.Modified {
		r.commitThenSettle(ctx, d.it)
		return
	}
	r.settle(ctx, d.it, nil)
}
