package exporter

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// outcome is what a plan decided: the events to send and the delivered
// state to record once they are acknowledged.
type outcome struct {
	events  []*event.Event
	changes []change
	// record is the new delivered state; nil with forget set: the key is
	// gone for this sink.
	record *state.Record
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
func plan(o origin, k state.Key, last *state.Record, attempted *state.Record, cur current, tomb *tombstone, recovered bool, obs observer, ahead bool) outcome {
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
		if s, ok := last.SentAs(m.uid, m.resourceVersion, del); ok {
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
			rec.Sent = &state.Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
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
func ahead(last *state.Record, out outcome) *state.Record {
	sentOf := func(s *shownChange) *state.Sent {
		return &state.Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
	}
	var add, mod *shownChange
	for i := range out.shown {
		s := &out.shown[i]
		switch s.c.kind {
		case event.Deleted:
			if last == nil || s.uid != last.UID {
				continue // a retraction of an unacknowledged incarnation
			}
			return &state.Record{UID: s.uid, ResourceVersion: s.rv, Object: s.c.obj, Scope: last.Scope, Rule: s.rule.index + 1,
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
