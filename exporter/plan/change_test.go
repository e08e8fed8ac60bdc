package plan

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
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

// With a checkpoint, a modification is sent after its record is written
// ahead: the delivered state (1208) with Sent naming the new version
// (1271) and the patch it carried. Killed after the sink stored 1271 but
// before the record moved, and the object deleted meanwhile, the restart
// infers the deletion from that record. The sink may hold 1271, so the
// deletion carries 1271 and the object the sink was sent (the state at
// rest with the sent patch applied), never 1208: a consumer that ignores
// older versions would otherwise keep the deleted object.
func TestDeletionAfterAWrittenAheadModificationCarriesTheSentVersion(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "configmaps"})
	filtered := planRules(t, config.Watch{Resource: "configmaps", Filter: `object.spec.replicas == 3`})
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	sentAt := time.Date(2026, 12, 1, 2, 3, 4, 0, time.UTC)
	// aheadOf is the record written ahead of sending the modification
	// to 1271, restored from a checkpoint: the state at rest is 1208.
	aheadOf := func(uid string, patch []jsonpatch.Op) *state.Record {
		o := obj(uid, "1208")
		o.Object["data"] = map[string]any{"k": "old", "keep": "same"}
		o.Object["spec"] = map[string]any{"replicas": int64(1)}
		return &state.Record{UID: uid, ResourceVersion: "1208", Object: o, Scope: "configmaps", Rule: 1, AtRest: true,
			Sent: &state.Sent{ResourceVersion: "1271", Time: sentAt, Patch: patch, ChangedPaths: jsonpatch.ChangedPaths(patch)}}
	}
	withoutState := func(r *state.Record) *state.Record { r.Object, r.AtRest = nil, false; return r }
	sent := []jsonpatch.Op{
		{Op: jsonpatch.OpReplace, Path: "/data/k", Value: "new"},
		// As a checkpoint decodes it (jsonpatch.Op.UnmarshalJSON).
		{Op: jsonpatch.OpReplace, Path: "/spec/replicas", Value: json.Number("3")},
	}
	for _, c := range []struct {
		name  string
		rules []*Rule
		last  *state.Record
		cur   *unstructured.Unstructured
		tomb  *Tombstone
		want  []string // id of each event
		// data.object of the deletion: data.k, spec.replicas
		wantK        string
		wantReplicas any
	}{
		{name: "gone, no final state", rules: rules, last: aheadOf("a", sent),
			want: []string{"a.1271.deleted"}, wantK: "new", wantReplicas: int64(3)},
		{name: "gone, the sent version's filter sees it", rules: filtered, last: aheadOf("a", sent),
			want: []string{"a.1271.deleted"}, wantK: "new", wantReplicas: int64(3)},
		{name: "gone, sent without a patch", rules: rules, last: aheadOf("a", []jsonpatch.Op{}),
			want: []string{"a.1271.deleted"}, wantK: "old", wantReplicas: int64(1)},
		{name: "gone, the sent patch does not apply", rules: rules, last: aheadOf("a", []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/data/missing", Value: "v"}}),
			want: []string{"a.1271.deleted"}, wantK: "old", wantReplicas: int64(1)},
		{name: "gone, a final state older than the sent version", rules: rules, last: aheadOf("a", sent), tomb: &Tombstone{Obj: obj("a", "1250"), Recovered: true},
			want: []string{"a.1271.deleted"}, wantK: "new", wantReplicas: int64(3)},
		{name: "gone, a final state newer than the sent version", rules: rules, last: aheadOf("a", sent), tomb: &Tombstone{Obj: obj("a", "1300")},
			want: []string{"a.1300.deleted"}},
		{name: "gone, a checkpoint that keeps no state", rules: rules, last: withoutState(aheadOf("a", sent)),
			want: []string{"a.1271.deleted"}},
		{name: "replaced by another incarnation", rules: rules, last: aheadOf("a", sent), cur: obj("b", "1400"),
			want: []string{"a.1271.deleted", "b.1400.added"}, wantK: "new", wantReplicas: int64(3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := json.Marshal(c.last.Object)
			if err != nil {
				t.Fatal(err)
			}
			out := Compute(NewOrigin("c"), k, c.last, nil, Current{Obj: c.cur, Rules: c.rules, Res: cmRes, Scope: "configmaps"}, c.tomb, false, fixedTime(time.Unix(0, 0)), true)
			var ids []string
			for _, ev := range out.Events {
				ids = append(ids, ev.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Fatalf("events %v, want %v", ids, c.want)
			}
			del := out.Events[0]
			data := del.Data.(*event.ChangeData)
			if del.ResourceVersion != strings.Split(c.want[0], ".")[1] {
				t.Errorf("resourceversion %s, want the id's", del.ResourceVersion)
			}
			if rv, _, _ := unstructured.NestedString(data.Object, "metadata", "resourceVersion"); rv != del.ResourceVersion {
				t.Errorf("data.object at rv %s, the event at %s", rv, del.ResourceVersion)
			}
			if c.wantK != "" {
				if got := data.Object["data"].(map[string]any); got["k"] != c.wantK || got["keep"] != "same" {
					t.Errorf("data.object.data = %v, want k %s and keep", got, c.wantK)
				}
				if got := data.Object["spec"].(map[string]any)["replicas"]; got != c.wantReplicas {
					t.Errorf("data.object.spec.replicas = %#v, want %#v", got, c.wantReplicas)
				}
			}
			if after, _ := json.Marshal(c.last.Object); string(after) != string(before) {
				t.Errorf("the record's state changed: %s, was %s", after, before)
			}
			// Written ahead of this deletion, the record names what it
			// sends: after another crash it goes out again the same.
			ahead := Ahead(c.last, out)
			if ahead == nil || !ahead.Deleting || ahead.ResourceVersion != del.ResourceVersion || ahead.Object.GetResourceVersion() != del.ResourceVersion {
				t.Fatalf("written ahead: %+v, want the deletion at %s", ahead, del.ResourceVersion)
			}
			again := Compute(NewOrigin("c"), k, ahead, nil, Current{Rules: c.rules, Res: cmRes, Scope: "configmaps"}, nil, false, fixedTime(time.Unix(1, 0)), true)
			if len(again.Events) != 1 {
				t.Fatalf("after another crash: events%s, want the deletion again", summary(again.Events))
			}
			first, err1 := event.Marshal(del)
			second, err2 := event.Marshal(again.Events[0])
			if err1 != nil || err2 != nil || string(first) != string(second) {
				t.Errorf("after another crash the deletion is\n%s, was\n%s (%v, %v)", second, first, err1, err2)
			}
		})
	}
}

func TestNewerVersion(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"1271", "1208", true},
		{"1208", "1271", false},
		{"1271", "1271", false},
		{"10000", "9999", true},
		{"18446744073709551617", "18446744073709551616", true},
		{"9", "18446744073709551616", false},
		{"", "1", false},
		{"2", "", false},
		{"012", "11", false}, // not as the API server writes them: unknown
		{"x2", "1", false},
	} {
		if got := NewerVersion(c.a, c.b); got != c.want {
			t.Errorf("NewerVersion(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
