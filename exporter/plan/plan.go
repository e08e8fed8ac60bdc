package plan

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Outcome is what a plan decided: the events to send and the delivered
// state to record once they are acknowledged.
type Outcome struct {
	Events  []*event.Event
	Changes []Change
	// Record is the new delivered state; nil with forget set: the key is
	// gone for this sink.
	Record *state.Record
	Forget bool
	// FilterErrors counts rules whose filter failed at run time.
	FilterErrors int
	// shown is, per event, the change it shows (events of gap markers
	// aside): what a record written ahead of the send keeps (ahead).
	shown []shownChange
}

// shownChange is the change one event shows.
type shownChange struct {
	c                Change
	rule             *Rule
	redact           *filters.Redactor
	uid, rv          string
	time             time.Time
	recoveredInEvent bool
	// patch and changedPaths, of a modification, are what its event
	// carried.
	patch        []jsonpatch.Op
	changedPaths []string
}

// Current is what the informers hold of a key for one sink.
type Current struct {
	Obj *unstructured.Unstructured // nil: in no scope of the sink
	// Rules through which it reaches the sink, config order. It may be a
	// scope table's own slice (appendRules): read only.
	Rules []*Rule
	Res   resource.Resource
	Scope string // name of the first scope holding it
	// Unsynced: a scope covering the key has not synced, so obj == nil
	// proves nothing.
	Unsynced bool
}

// Observer tells a plan when kubefeed first observed a version of its
// key's object: the time its event carries (CloudEvents `time`), the same
// on every sink and every retry. deleted asks for the version's deletion,
// which is observed apart from the version itself (an inferred deletion
// names the last delivered version).
type Observer interface {
	At(uid, rv string, deleted bool) time.Time
}

// Compute decides what to send for one key: a pure function of the sink's
// last delivered state, what may have reached it unacknowledged, the
// current state and the deleted object's final state.
//
// Each event carries the time its version was first observed (obs); a
// change that a record written ahead of its send describes (Record.Sent)
// is rendered as it was sent: the same time and recovered mark.
//
// With ahead set (a checkpointed sink) the outcome also says which change
// each event shows (shown), for the record written ahead of the send.
func Compute(o Origin, k state.Key, last *state.Record, attempted *state.Record, cur Current, tomb *Tombstone, recovered bool, obs Observer, ahead bool) Outcome {
	var out Outcome
	changes := decide(last, cur.Obj, tomb)
	if attempted != nil && last != nil && attempted.UID == last.UID && attempted.ResourceVersion != last.ResourceVersion && !last.Deleting && !last.Provisional {
		// A send of a later version of this incarnation failed: the sink
		// may hold it anyway (a lost ack, a server that stored it after
		// the ack timed out), so a deletion inferred without the final
		// state carries that version, never one older than the sink has.
		for i, c := range changes {
			if c.Kind == event.Deleted && (tomb == nil || string(tomb.Obj.GetUID()) != last.UID) {
				changes[i] = deleted(*attempted, tomb)
				changes[i].rule = last.Rule
			}
		}
	}
	if attempted != nil && attempted.UID != "" && (last == nil || attempted.UID != last.UID) && (cur.Obj == nil || string(cur.Obj.GetUID()) != attempted.UID) {
		// A send of another incarnation failed: the sink may hold it (a lost
		// ack), so it is retracted after what was acknowledged is.
		retract := deleted(*attempted, tomb)
		i := 0
		for i < len(changes) && changes[i].Kind == event.Deleted {
			i++
		}
		changes = append(changes[:i], append([]Change{retract}, changes[i:]...)...)
	}
	if recovered {
		for i := range changes {
			changes[i].recovered = true
		}
	}
	out.Changes = changes
	var curMeta Meta // read once: render and the record both need it
	if cur.Obj != nil {
		curMeta = MetaOf(cur.Obj)
	}
	var delivering *Rule
	for _, c := range changes {
		rules := cur.Rules
		if c.Kind == event.Deleted {
			rules = DeletionRules(cur.Rules, c.rule, c.Obj)
		}
		m := curMeta
		if c.Obj != cur.Obj {
			m = MetaOf(c.Obj)
		}
		del := c.Kind == event.Deleted
		var at time.Time
		if s, ok := last.SentAs(m.UID, m.ResourceVersion, del); ok {
			at, c.recovered = s.Time, s.Recovered
			if c.Kind == event.Modified && s.Patch != nil {
				c.replay = s
			}
		} else {
			at = obs.At(m.UID, m.ResourceVersion, del)
		}
		for _, rl := range rules {
			ev, err := render(o, cur.Res, k, c, m, rl, at)
			if err != nil {
				out.FilterErrors++
			}
			if ev != nil {
				out.Events = append(out.Events, ev)
				if ahead {
					sc := shownChange{c: c, rule: rl, redact: rl.Redactor(cur.Res), uid: m.UID, rv: m.ResourceVersion, time: at, recoveredInEvent: c.recovered}
					if cd, ok := ev.Data.(*event.ChangeData); ok && c.Kind == event.Modified {
						sc.patch, sc.changedPaths = cd.Patch, cd.ChangedPaths
					}
					out.shown = append(out.shown, sc)
				}
				if c.Kind != event.Deleted {
					delivering = rl
				}
				break
			}
		}
	}
	if cur.Obj == nil {
		out.Forget = true
		return out
	}
	rec := RecordFrom(cur.Obj, curMeta)
	rec.Scope = cur.Scope
	switch {
	case delivering != nil:
		rec.Rule = delivering.Index + 1
	case last != nil && last.UID == rec.UID && hasRule(cur.Rules, last.Rule):
		// Nothing shown (filtered or ignored): the record keeps the rule
		// that last delivered the object.
		rec.Rule = last.Rule
	case len(cur.Rules) > 0:
		// Unknown (restored from a checkpoint, or the rule left the
		// config): the first rule that selects the object now.
		rec.Rule = cur.Rules[0].Index + 1
	}
	for _, rl := range cur.Rules {
		if rl.Index+1 == rec.Rule {
			rec.Redact = rl.Redactor(cur.Res)
		}
	}
	for _, s := range out.shown {
		if s.c.Kind != event.Deleted && s.uid == rec.UID && s.rv == rec.ResourceVersion {
			// A checkpoint keeps when the delivered version was observed:
			// after a restart, a sink that had not got it yet sends it
			// with the time the others did.
			rec.Sent = &state.Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
		}
	}
	out.Record = &rec
	return out
}

// DeletionRules puts the rule that delivered the object first: its
// redaction applies to the final state too. When that rule is known and
// still routes here, no other rule renders the deletion.
func DeletionRules(rules []*Rule, delivered int, final *unstructured.Unstructured) []*Rule {
	if hasRule(rules, delivered) {
		for _, rl := range rules {
			if rl.Index+1 == delivered {
				return []*Rule{rl}
			}
		}
	}
	// Unknown: the rules whose label selector selects the final state,
	// never one that only shares the namespace.
	var selecting []*Rule
	for _, rl := range rules {
		if rl.Selects(final) {
			selecting = append(selecting, rl)
		}
	}
	if len(selecting) > 0 {
		return selecting
	}
	return rules
}

// Ahead is the record to write before out is sent (nil: none): for the
// deletion of the incarnation the sink holds, that incarnation's final
// state marked Deleting; for an object new to the sink (or offered again),
// its state marked Provisional; for a modification, the delivered state
// with the change it is about to receive. Each says what was sent (Sent).
func Ahead(last *state.Record, out Outcome) *state.Record {
	sentOf := func(s *shownChange) *state.Sent {
		return &state.Sent{ResourceVersion: s.rv, Time: s.time, Recovered: s.recoveredInEvent}
	}
	var add, mod *shownChange
	for i := range out.shown {
		s := &out.shown[i]
		switch s.c.Kind {
		case event.Deleted:
			if last == nil || s.uid != last.UID {
				continue // a retraction of an unacknowledged incarnation
			}
			return &state.Record{UID: s.uid, ResourceVersion: s.rv, Object: s.c.Obj, Scope: last.Scope, Rule: s.rule.Index + 1,
				Redact: s.redact, AtRest: last.AtRest && s.c.Obj == last.Object, Deleting: true, Sent: sentOf(s)}
		case event.Added:
			add = s
		case event.Modified:
			mod = s
		}
	}
	switch {
	case add != nil && out.Record != nil && out.Record.UID == add.uid:
		rec := *out.Record
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

func hasRule(rules []*Rule, idx int) bool {
	for _, rl := range rules {
		if rl.Index+1 == idx {
			return true
		}
	}
	return false
}
