package plan

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	evanphx "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// testRule compiles the one rule w.
func testRule(t testing.TB, w config.Watch) *Rule {
	t.Helper()
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Watch: []config.Watch{w}, Sinks: []config.Sink{{Name: "s", Stdout: &config.StdoutSink{}}}}
	cfg.SetDefaults()
	rules, err := CompileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rules[0]
}

func coreResource(name, kind string) resource.Resource {
	return resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: name}, GVK: schema.GroupVersionKind{Version: "v1", Kind: kind}, Namespaced: true}
}

func objectOf(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(s)); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return u
}

// consume plays the versions through render as a consumer of the events
// would: it takes data.object of the first, applies each patch, and checks
// that the result is data.object apart from resourceVersion and the rule's
// ignored paths. It returns the patches of the events sent.
func consume(t *testing.T, r *Rule, res resource.Resource, versions ...string) []string {
	t.Helper()
	var held map[string]any
	var prev *unstructured.Unstructured
	var patches []string
	for i, s := range versions {
		cur := objectOf(t, s)
		if prev == nil {
			held = r.Redactor(res).Object(withTypeMeta(cur, res))
			prev = cur
			continue
		}
		c := Change{Kind: event.Modified, Obj: cur, prev: recordOf(prev)}
		ev, err := render(NewOrigin("c"), res, state.Key{Namespace: "ns", Name: "n"}, c, MetaOf(c.Obj), r, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		prev = cur
		if ev == nil {
			continue
		}
		data := ev.Data.(*event.ChangeData)
		b, err := event.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var sent struct {
			Data struct {
				Object map[string]any  `json:"object"`
				Patch  json.RawMessage `json:"patch"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &sent); err != nil {
			t.Fatal(err)
		}
		patches = append(patches, string(sent.Data.Patch))
		patch, err := evanphx.DecodePatch(sent.Data.Patch)
		if err != nil {
			t.Fatalf("version %d: patch %s: %v", i, sent.Data.Patch, err)
		}
		hj, _ := json.Marshal(held)
		out, err := patch.Apply(hj)
		if err != nil {
			t.Fatalf("version %d: apply %s to %s: %v", i, sent.Data.Patch, hj, err)
		}
		held = nil
		if err := json.Unmarshal(out, &held); err != nil {
			t.Fatal(err)
		}
		o := jsonpatch.Options{Ignore: r.ignore}
		if ops := o.Diff(held, sent.Data.Object); len(ops) != 0 {
			got, _ := json.Marshal(ops)
			t.Fatalf("version %d: patch %s left the consumer with %s; it differs from data.object by %s", i, sent.Data.Patch, out, got)
		}
		if len(data.ChangedPaths) == 0 {
			t.Errorf("version %d: no changedPaths", i)
		}
	}
	return patches
}

func TestRenderIgnoredAnnotation(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "configmaps", IgnorePaths: []string{"/metadata/annotations/ping"}})
	res := coreResource("configmaps", "ConfigMap")
	got := consume(t, r, res,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","resourceVersion":"1"},"data":{"k":"v"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","resourceVersion":"2","annotations":{"ping":"1"}},"data":{"k":"v"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","resourceVersion":"3","annotations":{"ping":"2"}},"data":{"k":"v"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","resourceVersion":"4","annotations":{"ping":"2","foo":"x"}},"data":{"k":"v"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","resourceVersion":"5","annotations":{"ping":"3"}},"data":{"k":"v"}}`,
	)
	want := []string{
		`[{"op":"add","path":"/metadata/annotations","value":{"foo":"x"}}]`,
		`[{"op":"remove","path":"/metadata/annotations"}]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("patches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRenderHeartbeatsAndGeneration(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "widgets"})
	res := coreResource("widgets", "Widget")
	got := consume(t, r, res,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"1","generation":1},"spec":{"n":9007199254740993}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"2","generation":1},"spec":{"n":9007199254740993},"status":{"conditions":[{"type":"Ready","lastHeartbeatTime":"t1"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"3","generation":1},"spec":{"n":9007199254740993},"status":{"conditions":[{"type":"Ready","lastHeartbeatTime":"t2"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"4","generation":2},"spec":{"n":9007199254740993},"status":{"conditions":[{"type":"Ready","lastHeartbeatTime":"t2"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"5","generation":3},"spec":{"n":9007199254740992},"status":{"conditions":[{"type":"Ready","lastHeartbeatTime":"t3"}]}}`,
	)
	want := []string{
		`[{"op":"add","path":"/status","value":{"conditions":[{"type":"Ready"}]}}]`,
		`[{"op":"replace","path":"/metadata/generation","value":3},{"op":"replace","path":"/spec/n","value":9007199254740992}]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("patches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// With ignoreStatusOnly the consumer may hold an older status than the
// version a patch starts from; status changes then travel whole.
func TestRenderIgnoreStatusOnly(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "widgets", IgnoreStatusOnly: true})
	res := coreResource("widgets", "Widget")
	got := consume(t, r, res,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"1"},"spec":{"a":1}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"2"},"spec":{"a":1},"status":{"conditions":[{"type":"A"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"3"},"spec":{"a":2},"status":{"conditions":[{"type":"A"},{"type":"B"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"4"},"spec":{"a":2},"status":{"conditions":[{"type":"B"}]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"5"},"spec":{"a":3},"status":{"conditions":[]}}`,
		`{"apiVersion":"v1","kind":"Widget","metadata":{"name":"n","resourceVersion":"6"},"spec":{"a":4}}`,
	)
	want := []string{
		`[{"op":"replace","path":"/spec/a","value":2},{"op":"add","path":"/status","value":{"conditions":[{"type":"A"},{"type":"B"}]}}]`,
		`[{"op":"replace","path":"/spec/a","value":3},{"op":"add","path":"/status","value":{"conditions":[]}}]`,
		`[{"op":"replace","path":"/spec/a","value":4},{"op":"remove","path":"/status"}]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("patches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRenderSecretPatches(t *testing.T) {
	for _, mode := range []string{"", "hash"} {
		t.Run("redact="+mode, func(t *testing.T) {
			r := testRule(t, config.Watch{Resource: "secrets", Redact: mode})
			r.redactKey = []byte("k")
			if mode == "" {
				r.redactKey = nil
			}
			res := coreResource("secrets", "Secret")
			got := consume(t, r, res,
				`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"n","resourceVersion":"1"},"type":"Opaque"}`,
				`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"n","resourceVersion":"2"},"type":"Opaque","data":{"a":"aHVudGVyMg==","b":null}}`,
				`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"n","resourceVersion":"3"},"type":"Opaque","data":{"a":"c2VjcmV0","b":"eA=="}}`,
				`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"n","resourceVersion":"4"},"type":"Opaque"}`,
			)
			if len(got) != 3 {
				t.Fatalf("%d events, want 3: %v", len(got), got)
			}
			for _, p := range got {
				if strings.Contains(p, "aHVudGVyMg==") || strings.Contains(p, "c2VjcmV0") || strings.Contains(p, "eA==") {
					t.Errorf("patch leaks a secret: %s", p)
				}
			}
			if !strings.Contains(got[0], `"b":null`) {
				t.Errorf("null value lost: %s", got[0])
			}
		})
	}
}
