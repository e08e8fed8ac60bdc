package plan

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
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

// ChangedBy names only writers of the change, on random versions of a
// Deployment-like object and random managedFields (keyed list elements
// with quotes, < and non-ASCII, ports keyed by numbers, finalizers by
// value, elements by index, fields owned whole, entries without a time,
// entries added, removed, written again and reordered), in both forms the
// cache keeps: a modification names only managers with an entry in the
// new version that the old one did not have as it is (or with no time),
// unless no entry moved at all (two writes in one second);
// an addition at most
// one manager of the object; a deletion nobody. The exact owners of each
// path are checked case by case in attribution_test.go and the plan's
// golden file.
func TestChangedByNamesOnlyWritersOfTheChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	named := 0
	for round := range 3000 {
		prevObj := randomObject(rng)
		curObj := mutateObject(rng, prevObj)
		prevMF := randomManagedFields(rng, prevObj, nil)
		curMF := randomManagedFields(rng, curObj, prevMF)
		ops := jsonpatch.Options{Ignore: filters.DefaultIgnore}.Diff(prevObj, curObj)
		ops = append(ops, extraOps(rng)...)
		for _, form := range []string{"list", "raw"} {
			prev, cur := withManagedFields(t, prevObj, prevMF, form), withManagedFields(t, curObj, curMF, form)
			keptNone := rng.IntN(10) == 0
			if keptNone {
				prev = prevObj // kept no managedFields
			}
			for _, kind := range []event.Change{event.Modified, event.Added, event.Deleted} {
				p := prev
				if kind != event.Modified {
					p = nil
				}
				got := ChangedBy(kind, p, cur, ops)
				named += len(got)
				fail := func(why string) {
					t.Helper()
					t.Fatalf("round %d, %s form, %v: %v: %s\nops %v\nprev %v\ncur %v", round, form, kind, got, why, ops, prevMF, curMF)
				}
				switch kind {
				case event.Deleted:
					if len(got) > 0 {
						fail("a deletion names nobody")
					}
				case event.Added:
					if len(got) > 1 || (len(got) == 1 && !hasWriter(curMF, got[0], nil)) {
						fail("an addition names one manager of the object")
					}
				default:
					var unchanged []any
					if !keptNone && anyWriter(curMF, prevMF) {
						// Else no entry moved (two writes in one second):
						// whoever owns a changed path may be named.
						unchanged = prevMF
					}
					for _, f := range got {
						if !hasWriter(curMF, f, unchanged) {
							fail(f.Manager + " has no new or rewritten entry")
						}
					}
				}
			}
		}
	}
	if named < 3000 {
		t.Errorf("only %d managers named: the cases are too weak", named)
	}
}

// anyWriter reports whether mf has an entry that unchanged does not have
// as it is, or one without a time.
func anyWriter(mf, unchanged []any) bool {
	for _, e := range mf {
		m := e.(map[string]any)
		sub, _ := m["subresource"].(string)
		op, _ := m["operation"].(string)
		man, _ := m["manager"].(string)
		if hasWriter([]any{e}, event.FieldManager{Manager: man, Operation: op, Subresource: sub}, unchanged) {
			return true
		}
	}
	return false
}

// hasWriter reports whether mf has an entry of f's manager, operation and
// subresource whose time is not that of the last entry of the same key in
// before (new, or written again), or that has no time (the API server
// records none for some subresources: such an entry is named by what it
// owns, README "Who changed it"). With before nil every entry counts.
func hasWriter(mf []any, f event.FieldManager, before []any) bool {
	key := func(m map[string]any) [3]string {
		sub, _ := m["subresource"].(string)
		man, _ := m["manager"].(string)
		op, _ := m["operation"].(string)
		return [3]string{man, op, sub}
	}
	want := [3]string{f.Manager, f.Operation, f.Subresource}
	for _, e := range mf {
		m := e.(map[string]any)
		if key(m) != want {
			continue
		}
		t, timed := m["time"]
		if !timed || before == nil {
			return true
		}
		var last map[string]any
		for _, b := range before {
			if bm := b.(map[string]any); key(bm) == want {
				last = bm
			}
		}
		if last == nil || last["time"] != t {
			return true
		}
	}
	return false
}

// FuzzChangedByText: on any text as managedFields (not JSON, cut short,
// odd escapes), ChangedBy neither panics nor hangs, and names only
// managers that the new text names.
func FuzzChangedByText(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20 {
		obj := randomObject(rng)
		a := randomManagedFields(rng, obj, nil)
		b := randomManagedFields(rng, obj, a)
		at, _ := json.Marshal(a)
		bt, _ := json.Marshal(b)
		f.Add(string(at), string(bt), "/spec/template/spec/containers/0/image")
	}
	f.Add(`[{"manager":"a","fieldsV1":{"f:spec":{"\u0066:replicas":{}}}}]`, `[{"manager":"a","time":"1","fieldsV1":{"f:spec":{"f:replicas":{}}}}]`, "/spec/replicas")
	f.Add(`[{"manager":"a","fieldsV1":{"f:spec":{"f:x\q":{}}}}]`, `[{"manager":"a","time":"1","fieldsV1":{"f:spec":{"f:x\"":{},".":{}}}}]`, "/spec/x")
	f.Add(`[{"manager":"a","fieldsV1":{"f:spec":{"f:c":["a"}}}}]`, `[{"manager":"a","time":"2","fieldsV1":{"f:spec":{"f:c":["a"}}}}]`, "/spec/c/0")
	// Hostile text: quotes, brackets and escapes inside strings, unicode
	// escapes, duplicated keys, nulls and numbers for strings, fieldsV1
	// that is not an object, more than maxEntries entries, cut short, and
	// a scalar holding a quote (the walks of the members and of the
	// brackets part there).
	f.Add(`[{"manager":"a\"}]","fieldsV1":{"f:}":{"]":{}}}},{"manager":"b"}]`, `[{"manag\u0065r":"x\\","time":"1"},{"manager":null},{"manager":1}]`, "/spec")
	f.Add(`[{"manager":"a","manager":"b"},{"manager":"c","manager":null}]`, `[{"manager":"a","fieldsV1":[1,2]},{"manager":"b","fieldsV1":"x"},{"manager":"c","fieldsV1":null}]`, "/spec/replicas")
	f.Add(`[{"manager":"a","time":"1","x":1" ,"y":"}]`, `[{"manager":"a","time":"1","x":1" ,"y":"}","manager":"b"}]`, "/spec")
	f.Add(strings.Repeat(`{"manager":"m","time":"1"},`, 12), "["+strings.Repeat(`{"manager":"m","time":"2"},`, 12)+`{"manager":"n"`, "/spec")
	obj := randomObject(rand.New(rand.NewPCG(1, 2)))
	f.Fuzz(func(t *testing.T, prevText, curText, path string) {
		// An entry is read as its text says, whether or not another
		// version's entries are offered to skip reading it again.
		fresh := managedEntries(nil, curText, nil)
		offered := managedEntries(nil, curText, managedEntries(nil, prevText, nil))
		if !sameEntries(fresh, offered) {
			t.Fatalf("entries of %q read fresh %+v, with %q's offered %+v", curText, fresh, prevText, offered)
		}
		prev, cur := withText(obj, prevText), withText(obj, curText)
		ops := []jsonpatch.Op{{Op: "replace", Path: path}, {Op: "replace", Path: "/spec/template/spec/containers/1/image"}, {Op: "add", Path: "/metadata/finalizers/-"}}
		for _, kind := range []event.Change{event.Modified, event.Added} {
			for _, fm := range ChangedBy(kind, prev, cur, ops) {
				if !strings.Contains(curText, fm.Manager) && !strings.Contains(curText, `\`) {
					t.Fatalf("%v: names %q, which the text does not", kind, fm.Manager)
				}
			}
		}
	})
}

// sameEntries reports whether a and b are the same entries: names, times
// and field sets.
func sameEntries(a, b []managedEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].FieldManager != b[i].FieldManager || a[i].fields != b[i].fields {
			return false
		}
	}
	return true
}

// An entry of managedFields' text is read as the text says, whether or
// not the entries of another version are offered (an element that starts
// with one's text is taken as that entry): text that is not JSON too. A
// scalar holding a quote once made the walk of an entry's members end
// past where its brackets end, and an entry the other version read there
// stood for a different one.
func TestManagedEntriesReadTheSameWithOrWithoutAnotherVersions(t *testing.T) {
	cut := `{"manager":"a","time":"1","x":1" ,"y":"}`
	for _, c := range []struct{ prev, cur string }{
		{`[` + cut + `]`, `[` + cut + `","manager":"b"}]`},
		{`[` + cut + `","manager":"b"}]`, `[` + cut + `]`},
		{`[{"manager":"a","x":1{}, {"manager":"b"}]`, `[{"manager":"a","x":1{}, {"manager":"c"}]`},
		{`[{"manager":"a","time":"1"}]`, `[{"manager":"a","time":"1"},{"manager":"b"}]`},
	} {
		fresh := managedEntries(nil, c.cur, nil)
		offered := managedEntries(nil, c.cur, managedEntries(nil, c.prev, nil))
		if !sameEntries(fresh, offered) {
			t.Errorf("entries of %s\nread fresh     %+v\nwith %s's offered %+v", c.cur, fresh, c.prev, offered)
		}
	}
}

func withText(obj map[string]any, text string) map[string]any {
	out := WithoutManagedFields(obj)
	md := make(map[string]any)
	for k, v := range out["metadata"].(map[string]any) {
		md[k] = v
	}
	md["managedFields"] = text
	out["metadata"] = md
	return out
}

var (
	containerNames = []string{"app", "sidecar", `q"uote`, "<b>", "café", `back\slash`, "init"}
	labelKeys      = []string{"app", "team", "example.com/tier", "a~b", "x/y~z", "a<b", `q"k`}
	managerNames   = []string{"kubectl-client-side-apply", "kubectl", "ops-bot", "kube-controller-manager", "helm", "argo\"cd"}
	finalizerNames = []string{"example.com/a", "b", "c<d"}
)

func randomObject(rng *rand.Rand) map[string]any {
	labels := map[string]any{}
	for _, k := range labelKeys {
		if rng.IntN(2) == 0 {
			labels[k] = fmt.Sprint("v", rng.IntN(3))
		}
	}
	annotations := map[string]any{"deployment.kubernetes.io/revision": fmt.Sprint(rng.IntN(3))}
	var containers []any
	for _, n := range containerNames {
		if rng.IntN(2) == 0 {
			c := map[string]any{"name": n, "image": fmt.Sprint(n, ":", rng.IntN(3))}
			if rng.IntN(2) == 0 {
				c["ports"] = []any{map[string]any{"containerPort": int64(8080 + rng.IntN(2)), "protocol": "TCP"}}
			}
			containers = append(containers, c)
		}
	}
	var finalizers []any
	for _, f := range finalizerNames {
		if rng.IntN(2) == 0 {
			finalizers = append(finalizers, f)
		}
	}
	md := map[string]any{"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "1", "labels": labels, "annotations": annotations}
	if finalizers != nil {
		md["finalizers"] = finalizers
	}
	return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md,
		"spec":   map[string]any{"replicas": int64(rng.IntN(4)), "template": map[string]any{"spec": map[string]any{"containers": containers}}},
		"status": map[string]any{"replicas": int64(rng.IntN(4))}}
}

// mutateObject is obj with a few random changes (obj is left as it is).
func mutateObject(rng *rand.Rand, obj map[string]any) map[string]any {
	var out map[string]any
	b, _ := json.Marshal(obj)
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	_ = d.Decode(&out)
	normalizeNumbers(out)
	fresh := randomObject(rng)
	spec := out["spec"].(map[string]any)
	md := out["metadata"].(map[string]any)
	for range 1 + rng.IntN(3) {
		switch rng.IntN(5) {
		case 0:
			spec["replicas"] = int64(rng.IntN(6))
		case 1:
			spec["template"] = fresh["spec"].(map[string]any)["template"]
		case 2:
			md["labels"] = fresh["metadata"].(map[string]any)["labels"]
		case 3:
			md["finalizers"] = fresh["metadata"].(map[string]any)["finalizers"]
		case 4:
			if cs, _ := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any); len(cs) > 0 {
				cs[rng.IntN(len(cs))].(map[string]any)["image"] = fmt.Sprint("new:", rng.IntN(9))
			}
		}
	}
	md["resourceVersion"] = "2"
	return out
}

func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
	case json.Number:
		n, _ := x.Int64()
		return n
	}
	return v
}

// randomManagedFields is a managedFields list for obj; with before, some
// of before's entries are kept as they were, some with a new time.
func randomManagedFields(rng *rand.Rand, obj map[string]any, before []any) []any {
	var out []any
	for _, e := range before {
		switch rng.IntN(4) {
		case 0: // removed
		case 1: // written again
			m := e.(map[string]any)
			c := map[string]any{}
			for k, v := range m {
				c[k] = v
			}
			if rng.IntN(4) > 0 {
				c["time"] = fmt.Sprintf("2026-12-07T10:%02d:00Z", rng.IntN(60))
			}
			if rng.IntN(2) == 0 {
				c["fieldsV1"] = randomFieldSet(rng, obj)
			}
			out = append(out, c)
		default:
			out = append(out, e)
		}
	}
	for range rng.IntN(3) {
		e := map[string]any{"manager": managerNames[rng.IntN(len(managerNames))], "operation": []string{"Update", "Apply"}[rng.IntN(2)],
			"apiVersion": "apps/v1", "fieldsType": "FieldsV1"}
		if rng.IntN(4) == 0 {
			e["subresource"] = []string{"scale", "status"}[rng.IntN(2)]
		}
		if rng.IntN(5) > 0 {
			e["time"] = fmt.Sprintf("2026-12-07T10:%02d:00Z", rng.IntN(60))
		}
		if rng.IntN(8) > 0 {
			e["fieldsV1"] = randomFieldSet(rng, obj)
		}
		out = append(out, e)
	}
	if rng.IntN(6) == 0 {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// randomFieldSet owns a random part of obj, as fieldsV1 does.
func randomFieldSet(rng *rand.Rand, obj map[string]any) map[string]any {
	var set func(v any, depth int) map[string]any
	set = func(v any, depth int) map[string]any {
		s := map[string]any{}
		switch x := v.(type) {
		case map[string]any:
			if depth > 0 && rng.IntN(6) == 0 {
				s["."] = map[string]any{}
			}
			for k, e := range x {
				if rng.IntN(3) == 0 {
					continue
				}
				if rng.IntN(4) == 0 {
					s["f:"+k] = map[string]any{} // a leaf
				} else {
					s["f:"+k] = set(e, depth+1)
				}
			}
		case []any:
			for i, e := range x {
				if rng.IntN(3) == 0 {
					continue
				}
				var key string
				switch m, _ := e.(map[string]any); {
				case rng.IntN(6) == 0:
					key = fmt.Sprintf("i:%d", i)
				case m != nil && m["name"] != nil:
					kb, _ := json.Marshal(map[string]any{"name": m["name"]})
					key = "k:" + string(kb)
				case m != nil && m["containerPort"] != nil:
					kb, _ := json.Marshal(map[string]any{"containerPort": m["containerPort"], "protocol": m["protocol"]})
					key = "k:" + string(kb)
				default:
					vb, _ := json.Marshal(e)
					key = "v:" + string(vb)
				}
				s[key] = set(e, depth+1)
			}
		}
		return s
	}
	return set(obj, 0)
}

// extraOps are paths a patch may hold that the diff does not make.
func extraOps(rng *rand.Rand) []jsonpatch.Op {
	paths := []string{"", "spec", "/a~2b", "/metadata/finalizers/-", "/spec/template/spec/containers/-/image",
		"/spec/template/spec/containers/9/image", "/spec/template/spec/containers/01", "/metadata/labels/x~1y~0z",
		"/metadata/labels/bad~2", "/spec/replicas~"}
	var out []jsonpatch.Op
	for range rng.IntN(3) {
		out = append(out, jsonpatch.Op{Op: "replace", Path: paths[rng.IntN(len(paths))]})
	}
	return out
}

// withManagedFields is obj with mf as the cache keeps it: from a list
// page (ManagedFieldsText) or a watch event (the text as it came).
func withManagedFields(t *testing.T, obj map[string]any, mf []any, form string) map[string]any {
	out := WithoutManagedFields(obj)
	md := make(map[string]any)
	for k, v := range out["metadata"].(map[string]any) {
		md[k] = v
	}
	out["metadata"] = md
	if form == "list" {
		list := make([]any, len(mf))
		for i, e := range mf {
			c := map[string]any{}
			for k, v := range e.(map[string]any) {
				c[k] = v
			}
			list[i] = c
		}
		md["managedFields"] = list
		ManagedFieldsText(out)
		return out
	}
	b, err := json.MarshalIndent(mf, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	md["managedFields"] = string(b)
	return out
}

// managedFields text that is not JSON ends the walk: an array closed by
// the wrong bracket once looped for ever on its empty last element.
func TestChangedByEndsOnTextThatIsNotJSON(t *testing.T) {
	obj := deployment(t, "1", 2, "app:1", nil, "")
	for _, text := range []string{`["a"}`, `[}`, `[{"manager":"m"},}`, `[{"manager":"m"} } ]`} {
		cur := WithoutManagedFields(obj)
		md := map[string]any{"name": "web"}
		md["managedFields"] = text
		cur["metadata"] = md
		ChangedBy(event.Modified, cur, cur, []jsonpatch.Op{{Op: "replace", Path: "/spec/replicas"}})
		ChangedBy(event.Added, nil, cur, nil)
	}
}
