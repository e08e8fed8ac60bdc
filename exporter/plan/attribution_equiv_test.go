package plan

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

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
	obj := randomObject(rand.New(rand.NewPCG(1, 2)))
	f.Fuzz(func(t *testing.T, prevText, curText, path string) {
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
