package plan

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
)

func obj(uid, rv string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
	u.SetUID(typesUID(uid))
	u.SetResourceVersion(rv)
	u.SetName("x")
	return u
}

// recordOf is the delivered-state record of obj, as a worker records it.
func recordOf(obj *unstructured.Unstructured) state.Record { return RecordFrom(obj, MetaOf(obj)) }

func TestDecide(t *testing.T) {
	rec := func(uid, rv string) *state.Record { r := recordOf(obj(uid, rv)); return &r }
	final := obj("a", "9")
	for _, tc := range []struct {
		name string
		last *state.Record
		cur  *unstructured.Unstructured
		tomb *Tombstone
		want []event.Change
		// checks on the first change
		recovered bool
		objRV     string
	}{
		{"nothing known", nil, nil, nil, nil, false, ""},
		{"new object", nil, obj("a", "1"), nil, []event.Change{event.Added}, false, "1"},
		{"resync", rec("a", "1"), obj("a", "1"), nil, nil, false, ""},
		{"modified", rec("a", "1"), obj("a", "5"), nil, []event.Change{event.Modified}, false, "5"},
		{"deleted with final state", rec("a", "5"), nil, &Tombstone{Obj: final}, []event.Change{event.Deleted}, false, "9"},
		{"deleted seen by relist", rec("a", "5"), nil, &Tombstone{Obj: final, Recovered: true}, []event.Change{event.Deleted}, true, "9"},
		{"deleted, tombstone of another uid", rec("a", "5"), nil, &Tombstone{Obj: obj("b", "12")}, []event.Change{event.Deleted}, true, "5"},
		{"uid change", rec("a", "5"), obj("b", "7"), &Tombstone{Obj: final}, []event.Change{event.Deleted, event.Added}, false, "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(tc.last, tc.cur, tc.tomb)
			if len(got) != len(tc.want) {
				t.Fatalf("decide = %d changes, want %v", len(got), tc.want)
			}
			for i, c := range got {
				if c.Kind != tc.want[i] {
					t.Errorf("change %d = %s, want %s", i, c.Kind, tc.want[i])
				}
			}
			if len(got) > 0 {
				if got[0].recovered != tc.recovered || got[0].Obj.GetResourceVersion() != tc.objRV {
					t.Errorf("first change: recovered %v rv %s, want %v %s", got[0].recovered, got[0].Obj.GetResourceVersion(), tc.recovered, tc.objRV)
				}
			}
		})
	}
}

// A provisional record (written before its added event was sent, then a
// crash) is offered again as added, or retracted when the object is gone.
func TestDecideProvisional(t *testing.T) {
	prov := recordOf(obj("a", "1"))
	prov.Provisional = true
	if got := decide(&prov, obj("a", "1"), nil); len(got) != 1 || got[0].Kind != event.Added {
		t.Fatalf("provisional, same object: %v, want added again", got)
	}
	if got := decide(&prov, nil, nil); len(got) != 1 || got[0].Kind != event.Deleted {
		t.Fatalf("provisional, object gone: %v, want deleted", got)
	}
	if got := decide(&prov, obj("b", "3"), nil); len(got) != 2 || got[0].Kind != event.Deleted || got[1].Kind != event.Added {
		t.Fatalf("provisional, new uid: %v, want deleted then added", got)
	}
}
