package plan

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// Change is one event to emit, before it is put in an envelope.
type Change struct {
	Kind event.Change
	// Obj is the new state, or for deleted the last known state.
	Obj *unstructured.Unstructured
	// prev is what the sink had (modified only).
	prev      state.Record
	recovered bool
	// rule is the index+1 of the rule that delivered the object being
	// deleted (deleted only; 0: unknown).
	rule int
	// replay, on a modification sent again after a restart, is what it
	// carried the first time (Record.Sent): its patch is sent again rather
	// than diffed anew.
	replay *state.Sent
}

// Tombstone is the final state of a deleted object as the informer saw it.
type Tombstone struct {
	Obj       *unstructured.Unstructured
	Recovered bool // seen through a relist (DeletedFinalStateUnknown)
}

// decide compares what a sink last got with the current state. last is nil
// when the sink has nothing for the key; cur is nil when the object is gone;
// tomb is the final state of a deleted object, if known.
func decide(last *state.Record, cur *unstructured.Unstructured, tomb *Tombstone) []Change {
	switch {
	case last == nil && cur == nil:
		return nil
	case last == nil:
		return []Change{{Kind: event.Added, Obj: cur}}
	case last.Deleting && cur != nil && string(cur.GetUID()) == last.UID:
		// Its deletion (it left the scope) may have reached the sink, and
		// it is back: the sink learns it again.
		return []Change{{Kind: event.Added, Obj: cur}}
	case last.Provisional && cur == nil:
		// Perhaps sent, never acknowledged: retract it.
		return []Change{deleted(*last, tomb)}
	case last.Provisional && string(cur.GetUID()) == last.UID:
		// Perhaps sent, never acknowledged: offer it again.
		return []Change{{Kind: event.Added, Obj: cur}}
	case cur == nil:
		return []Change{deleted(*last, tomb)}
	case string(cur.GetUID()) != last.UID:
		return []Change{deleted(*last, tomb), {Kind: event.Added, Obj: cur}}
	case cur.GetResourceVersion() == last.ResourceVersion:
		return nil
	default:
		return []Change{{Kind: event.Modified, Obj: cur, prev: *last}}
	}
}

// deleted is the deletion of the incarnation last describes: the watch's
// final state (tomb) when it is of that uid, else last's state. When last
// was written ahead of a modification (sentAhead), the sink may hold that
// modification's version, so the deletion carries the state it was sent
// at that version (sentState), unless the final state is newer.
func deleted(last state.Record, tomb *Tombstone) Change {
	sent := sentAhead(last)
	if tomb != nil && string(tomb.Obj.GetUID()) == last.UID && (sent == nil || !NewerVersion(sent.ResourceVersion, tomb.Obj.GetResourceVersion())) {
		return Change{Kind: event.Deleted, Obj: tomb.Obj, recovered: tomb.Recovered, rule: last.Rule}
	}
	obj := last.Object
	switch {
	case obj == nil:
		rv := last.ResourceVersion
		if sent != nil {
			rv = sent.ResourceVersion
		}
		obj = &unstructured.Unstructured{Object: map[string]any{}}
		obj.SetUID(typesUID(last.UID))
		obj.SetResourceVersion(rv)
	case sent != nil:
		// The sink may hold the modification written ahead: the deletion
		// carries the state it was sent, never an older version.
		obj = sentState(obj, sent)
	}
	if last.Deleting {
		// Written before this deletion was sent: the final state it
		// carried, sent again as it was.
		recovered := true
		if last.Sent != nil {
			recovered = last.Sent.Recovered
		}
		return Change{Kind: event.Deleted, Obj: obj, recovered: recovered, rule: last.Rule}
	}
	// Without the watch's final state the deletion was inferred.
	return Change{Kind: event.Deleted, Obj: obj, recovered: true, rule: last.Rule}
}

// RecordFrom is the delivered-state record of obj, whose metadata m the
// caller read.
func RecordFrom(obj *unstructured.Unstructured, m Meta) state.Record {
	return state.Record{UID: m.UID, ResourceVersion: m.ResourceVersion, Object: obj}
}
