package exporter

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// change is one event to emit, before it is put in an envelope.
type change struct {
	kind event.Change
	// obj is the new state, or for deleted the last known state.
	obj *unstructured.Unstructured
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

// tombstone is the final state of a deleted object as the informer saw it.
type tombstone struct {
	obj       *unstructured.Unstructured
	recovered bool // seen through a relist (DeletedFinalStateUnknown)
}

// decide compares what a sink last got with the current state. last is nil
// when the sink has nothing for the key; cur is nil when the object is gone;
// tomb is the final state of a deleted object, if known.
func decide(last *state.Record, cur *unstructured.Unstructured, tomb *tombstone) []change {
	switch {
	case last == nil && cur == nil:
		return nil
	case last == nil:
		return []change{{kind: event.Added, obj: cur}}
	case last.Deleting && cur != nil && string(cur.GetUID()) == last.UID:
		// Its deletion (it left the scope) may have reached the sink, and
		// it is back: the sink learns it again.
		return []change{{kind: event.Added, obj: cur}}
	case last.Provisional && cur == nil:
		// Perhaps sent, never acknowledged: retract it.
		return []change{deleted(*last, tomb)}
	case last.Provisional && string(cur.GetUID()) == last.UID:
		// Perhaps sent, never acknowledged: offer it again.
		return []change{{kind: event.Added, obj: cur}}
	case cur == nil:
		return []change{deleted(*last, tomb)}
	case string(cur.GetUID()) != last.UID:
		return []change{deleted(*last, tomb), {kind: event.Added, obj: cur}}
	case cur.GetResourceVersion() == last.ResourceVersion:
		return nil
	default:
		return []change{{kind: event.Modified, obj: cur, prev: *last}}
	}
}

func deleted(last state.Record, tomb *tombstone) change {
	if tomb != nil && string(tomb.obj.GetUID()) == last.UID {
		return change{kind: event.Deleted, obj: tomb.obj, recovered: tomb.recovered, rule: last.Rule}
	}
	obj := last.Object
	if obj == nil {
		obj = &unstructured.Unstructured{Object: map[string]any{}}
		obj.SetUID(typesUID(last.UID))
		obj.SetResourceVersion(last.ResourceVersion)
	}
	if last.Deleting {
		// Written before this deletion was sent: the final state it
		// carried, sent again as it was.
		recovered := true
		if last.Sent != nil {
			recovered = last.Sent.Recovered
		}
		return change{kind: event.Deleted, obj: obj, recovered: recovered, rule: last.Rule}
	}
	// Without the watch's final state the deletion was inferred.
	return change{kind: event.Deleted, obj: obj, recovered: true, rule: last.Rule}
}

// recordFrom is the delivered-state record of obj, whose metadata m the
// caller read.
func recordFrom(obj *unstructured.Unstructured, m objMeta) state.Record {
	return state.Record{UID: m.uid, ResourceVersion: m.resourceVersion, Object: obj}
}
