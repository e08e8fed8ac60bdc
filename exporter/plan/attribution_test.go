package plan

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// deployment is a Deployment-like object whose managedFields (as JSON,
// compacted the way the cache keeps them) are mf.
func deployment(t *testing.T, rv string, replicas int64, image string, labels map[string]any, mf string) map[string]any {
	t.Helper()
	var entries []any
	if mf != "" {
		if err := json.Unmarshal([]byte(mf), &entries); err != nil {
			t.Fatal(err)
		}
	}
	md := map[string]any{"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": rv, "labels": labels}
	if entries != nil {
		md["managedFields"] = entries
	}
	obj := map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md,
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "app", "image": image}, map[string]any{"name": "sidecar", "image": "proxy:1"}}}}}}
	return obj
}

const (
	createdByKubectl = `{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"apps/v1","time":"2026-12-07T10:00:00Z","fieldsType":"FieldsV1",
		"fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}},"k:{\"name\":\"sidecar\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}`
	opsBotApply = `{"manager":"ops-bot","operation":"Apply","apiVersion":"apps/v1","time":"%s","fieldsType":"FieldsV1",
		"fieldsV1":{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}`
	scaled = `{"manager":"kubectl","operation":"Update","subresource":"scale","apiVersion":"apps/v1","time":"%s","fieldsType":"FieldsV1",
		"fieldsV1":{"f:spec":{"f:replicas":{}}}}`
	labeller = `{"manager":"labeller","operation":"Update","apiVersion":"apps/v1","time":"%s","fieldsType":"FieldsV1",
		"fieldsV1":{"f:metadata":{"f:labels":{"f:example.com/tier":{}}}}}`
	statusWriter = `{"manager":"kube-controller-manager","operation":"Update","subresource":"status","apiVersion":"apps/v1","time":"%s","fieldsType":"FieldsV1",
		"fieldsV1":{"f:status":{"f:replicas":{}}}}`
)

func entriesJSON(parts ...string) string { return "[" + strings.Join(parts, ",") + "]" }

func at(s, tm string) string { return strings.Replace(s, "%s", tm, 1) }

func managers(fms []event.FieldManager) string {
	var out []string
	for _, f := range fms {
		s := f.Manager + "/" + f.Operation
		if f.Subresource != "" {
			s += "/" + f.Subresource
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

func TestChangedByNamesTheManagersThatWroteTheChangedPaths(t *testing.T) {
	lbl := map[string]any{"app": "web"}
	lbl2 := map[string]any{"app": "web", "example.com/tier": "gold"}
	base := deployment(t, "1", 2, "app:1", lbl, entriesJSON(createdByKubectl))
	t1, t2 := "2026-12-07T10:05:00Z", "2026-12-07T10:06:00Z"
	for _, tc := range []struct {
		name       string
		prev, cur  map[string]any
		want       string
		wantNoData bool
	}{
		{name: "a server-side apply by another manager", prev: base,
			cur:  deployment(t, "2", 2, "app:2", lbl, entriesJSON(createdByKubectl, at(opsBotApply, t1))),
			want: "ops-bot/Apply"},
		{name: "the scale subresource", prev: base,
			cur:  deployment(t, "2", 5, "app:1", lbl, entriesJSON(createdByKubectl, at(scaled, t1))),
			want: "kubectl/Update/scale"},
		{name: "two managers in one coalesced change, each owning a changed path",
			prev: deployment(t, "2", 2, "app:2", lbl, entriesJSON(createdByKubectl, at(opsBotApply, t1))),
			cur:  deployment(t, "3", 5, "app:3", lbl, entriesJSON(createdByKubectl, at(opsBotApply, t2), at(scaled, t2))),
			want: "ops-bot/Apply,kubectl/Update/scale"},
		{name: "a manager whose time moved but who owns nothing in the patch is left out",
			prev: deployment(t, "2", 2, "app:1", lbl, entriesJSON(createdByKubectl, at(statusWriter, t1))),
			cur:  deployment(t, "3", 5, "app:1", lbl, entriesJSON(createdByKubectl, at(statusWriter, t2), at(scaled, t2))),
			want: "kubectl/Update/scale"},
		{name: "a label key with a slash (~1 in the patch path)", prev: base,
			cur:  deployment(t, "2", 2, "app:1", lbl2, entriesJSON(createdByKubectl, at(labeller, t1))),
			want: "labeller/Update"},
		{name: "the previous version kept no managedFields: the owners of the changed paths",
			prev: deployment(t, "1", 2, "app:1", lbl, ""),
			cur:  deployment(t, "2", 5, "app:1", lbl, entriesJSON(createdByKubectl, at(opsBotApply, t1), at(scaled, t1))),
			want: "kubectl-client-side-apply/Update,kubectl/Update/scale"},
		{name: "a second scale: the scale entry has no time (the API server records none) and is named by what it owns",
			prev: deployment(t, "2", 5, "app:1", lbl, entriesJSON(createdByKubectl, at(scaled, ""))),
			cur:  deployment(t, "3", 7, "app:2", lbl, entriesJSON(createdByKubectl, at(scaled, ""), at(opsBotApply, t1))),
			want: "kubectl/Update/scale,ops-bot/Apply"},
		{name: "no managedFields now: nothing to say", prev: base,
			cur: deployment(t, "2", 5, "app:1", lbl, ""), wantNoData: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := jsonpatch.Diff(tc.prev["spec"], tc.cur["spec"])
			for i := range ops {
				ops[i].Path = "/spec" + ops[i].Path
			}
			ops = append(ops, prefixed("/metadata/labels", jsonpatch.Diff(tc.prev["metadata"].(map[string]any)["labels"], tc.cur["metadata"].(map[string]any)["labels"]))...)
			if len(ops) == 0 {
				t.Fatal("the case changes nothing")
			}
			// managedFields of a list page (decoded, turned into text by
			// the transform) and of a watch event (text as it came, with
			// apiVersion and fieldsType) give the same answer.
			for form, objs := range map[string][2]map[string]any{"list page": {listForm(tc.prev), listForm(tc.cur)}, "watch event": {rawForm(t, tc.prev), rawForm(t, tc.cur)}} {
				got := ChangedBy(event.Modified, objs[0], objs[1], ops)
				if tc.wantNoData {
					if got != nil {
						t.Errorf("%s: ChangedBy = %v, want nil", form, got)
					}
					continue
				}
				if managers(got) != tc.want {
					t.Errorf("%s: ChangedBy = %s, want %s (patch %v)", form, managers(got), tc.want, ops)
				}
			}
		})
	}
}

func prefixed(p string, ops []jsonpatch.Op) []jsonpatch.Op {
	for i := range ops {
		ops[i].Path = p + ops[i].Path
	}
	return ops
}

func TestChangedByOfAnAdditionIsTheCreatorAndOfADeletionNobody(t *testing.T) {
	cur := deployment(t, "3", 5, "app:1", map[string]any{"app": "web"},
		entriesJSON(at(scaled, "2026-12-07T10:09:00Z"), createdByKubectl, at(statusWriter, "2026-12-07T10:01:00Z")))
	cur = listForm(cur)
	if got := managers(ChangedBy(event.Added, nil, cur, nil)); got != "kubectl-client-side-apply/Update" {
		t.Errorf("added: %s, want the earliest writer", got)
	}
	if got := ChangedBy(event.Deleted, nil, cur, nil); got != nil {
		t.Errorf("deleted: %v, want nil", got)
	}
}

func TestChangedByIgnoresMalformedManagedFields(t *testing.T) {
	prev := deployment(t, "1", 2, "app:1", nil, "")
	cur := deployment(t, "2", 3, "app:1", nil, "")
	cur["metadata"].(map[string]any)["managedFields"] = []any{
		"not an entry",
		map[string]any{"manager": 7, "fieldsV1": "nope"},
		map[string]any{"manager": "m", "operation": "Update", "time": "2026-12-07T10:00:00Z", "fieldsV1": mfSet(
			`{"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{bad":{},"v:[":{}}}}}}`)},
	}
	ops := []jsonpatch.Op{{Op: "replace", Path: "/spec/replicas", Value: int64(3)}, {Op: "replace", Path: "/spec/template/spec/containers/0/image", Value: "x"}, {Op: "add", Path: "/spec/template/spec/containers/-", Value: "x"}, {Op: "replace", Path: "/spec/template/spec/containers/9/image", Value: "x"}}
	got := ChangedBy(event.Modified, listForm(prev), listForm(cur), ops)
	if managers(got) != "m/Update" {
		t.Errorf("ChangedBy = %s, want m/Update", managers(got))
	}
}

// A rule with attribution: managers renders data.changedBy and the
// changedby extension; data.object and data.oldObject never carry
// managedFields, with or without attribution.
func TestRenderAttributionAndNoManagedFieldsInData(t *testing.T) {
	prev := deployment(t, "1", 2, "app:1", map[string]any{"app": "web"}, entriesJSON(createdByKubectl))
	cur := deployment(t, "2", 5, "app:1", map[string]any{"app": "web"}, entriesJSON(createdByKubectl, at(scaled, "2026-12-07T10:05:00Z")))
	prev, cur = listForm(prev), listForm(cur)
	now := time.Date(2026, 12, 7, 10, 5, 1, 0, time.UTC)
	for _, attr := range []string{"", config.AttributionManagers} {
		r := testRule(t, config.Watch{Resource: "configmaps", Attribution: attr, OldObject: true})
		c := Change{Kind: event.Modified, Obj: &unstructured.Unstructured{Object: cur}, prev: state.Record{UID: "u1", ResourceVersion: "1", Object: &unstructured.Unstructured{Object: prev}}}
		ev, err := render(NewOrigin("clu"), cmRes, state.Key{Namespace: "shop", Name: "web"}, c, MetaOf(c.Obj), r, now)
		if err != nil || ev == nil {
			t.Fatalf("attribution %q: %v %v", attr, ev, err)
		}
		b, err := event.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "managedFields") || strings.Contains(string(b), "fieldsV1") {
			t.Errorf("attribution %q: managedFields in the event: %s", attr, b)
		}
		if _, ok := cur["metadata"].(map[string]any)["managedFields"]; !ok {
			t.Fatal("render modified the cached object")
		}
		d := ev.Data.(*event.ChangeData)
		if attr == "" {
			if d.ChangedBy != nil || ev.ChangedBy != "" || strings.Contains(string(b), "changedby") {
				t.Errorf("no attribution asked, got %s", b)
			}
			continue
		}
		want := []event.FieldManager{{Manager: "kubectl", Operation: "Update", Subresource: "scale", Time: "2026-12-07T10:05:00Z"}}
		if !reflect.DeepEqual(d.ChangedBy, want) || ev.ChangedBy != "kubectl" {
			t.Errorf("changedBy %+v, extension %q", d.ChangedBy, ev.ChangedBy)
		}
		var back map[string]any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back["changedby"] != "kubectl" {
			t.Errorf("encoded extension: %v", back["changedby"])
		}
		cb, _ := back["data"].(map[string]any)["changedBy"].([]any)
		if len(cb) != 1 || cb[0].(map[string]any)["subresource"] != "scale" {
			t.Errorf("encoded data.changedBy: %v", back["data"])
		}
	}
}

func mfSet(s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	return m
}

// rawForm is obj with its managedFields as their JSON text, as the watch
// decoder keeps them (wirejson ManagedFieldsRaw).
func rawForm(t *testing.T, obj map[string]any) map[string]any {
	md := obj["metadata"].(map[string]any)
	list, ok := md["managedFields"].([]any)
	if !ok {
		return obj
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	out := WithoutManagedFields(obj)
	out["metadata"].(map[string]any)["managedFields"] = string(b)
	return out
}

// listForm is obj as the informer's transform leaves a list page's object
// (ManagedFieldsText), obj itself untouched.
func listForm(obj map[string]any) map[string]any {
	list, ok := obj["metadata"].(map[string]any)["managedFields"].([]any)
	if !ok {
		return obj
	}
	out := WithoutManagedFields(obj)
	entries := make([]any, len(list))
	for i, e := range list {
		if m, ok := e.(map[string]any); ok {
			c := make(map[string]any, len(m))
			for k, v := range m {
				c[k] = v
			}
			e = c
		}
		entries[i] = e
	}
	out["metadata"].(map[string]any)["managedFields"] = entries
	ManagedFieldsText(out)
	return out
}

// A list item named by its key fields (k:{...}) matches only the element
// whose values are equal as JSON numbers, exactly: 2^53+1 is not 2^53,
// and an int64 and a key's decimal of one value are.
func TestElementSetMatchesKeysExactlyBeyond2To53(t *testing.T) {
	node := fieldNode{raw: `{"k:{\"containerPort\":9007199254740993,\"protocol\":\"TCP\"}":{"f:name":{}}}`, valid: true}
	for _, tc := range []struct {
		port int64
		want bool
	}{{9007199254740993, true}, {9007199254740992, false}} {
		_, got := elementSet(node, 0, map[string]any{"containerPort": tc.port, "protocol": "TCP"})
		if got != tc.want {
			t.Errorf("port %d: matched %v, want %v", tc.port, got, tc.want)
		}
	}
	if _, got := elementSet(node, 0, nil); got {
		t.Error("a null element matched a keyed set")
	}
}
