package filters

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestRedactOps(t *testing.T) {
	envs := Patterns{MustPattern("/spec/containers/*/env/*/value")}
	for _, tc := range []struct {
		name     string
		patterns Patterns
		ops      []jsonpatch.Op
		want     string // with the marker; every "<redacted>" becomes a hash with a key
	}{
		{"whole data map added", SecretPaths,
			[]jsonpatch.Op{{Op: "add", Path: "/data", Value: map[string]any{"k": "c2VjcmV0", "j": "b3RoZXI="}}},
			`[{"op":"add","path":"/data","value":{"j":"<redacted>","k":"<redacted>"}}]`},
		{"one key replaced", SecretPaths,
			[]jsonpatch.Op{{Op: "replace", Path: "/data/k", Value: "bmV3"}},
			`[{"op":"replace","path":"/data/k","value":"<redacted>"}]`},
		{"null values are kept, not dropped", SecretPaths,
			[]jsonpatch.Op{{Op: "replace", Path: "/data/k", Value: nil}, {Op: "add", Path: "/data", Value: nil}, {Op: "add", Path: "/data", Value: map[string]any{"k": nil, "j": "x"}}},
			`[{"op":"replace","path":"/data/k","value":null},{"op":"add","path":"/data","value":null},{"op":"add","path":"/data","value":{"j":"<redacted>","k":null}}]`},
		{"remove passes", SecretPaths,
			[]jsonpatch.Op{{Op: "remove", Path: "/data/k"}, {Op: "remove", Path: "/data"}},
			`[{"op":"remove","path":"/data/k"},{"op":"remove","path":"/data"}]`},
		{"whole object as a value", SecretPaths,
			[]jsonpatch.Op{{Op: "add", Path: "/metadata", Value: map[string]any{"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{}}`, "team": "shop"}}}},
			`[{"op":"add","path":"/metadata","value":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"<redacted>","team":"shop"}}}]`},
		{"escaped key in the path", SecretPaths,
			[]jsonpatch.Op{{Op: "replace", Path: "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration", Value: "{}"}},
			`[{"op":"replace","path":"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration","value":"<redacted>"}]`},
		{"arrays of maps inside the value", envs,
			[]jsonpatch.Op{{Op: "add", Path: "/spec/containers", Value: []any{map[string]any{"name": "c", "env": []any{map[string]any{"name": "A", "value": "pw"}, map[string]any{"name": "B"}}}}}},
			`[{"op":"add","path":"/spec/containers","value":[{"env":[{"name":"A","value":"<redacted>"},{"name":"B"}],"name":"c"}]}]`},
		{"array element added", envs,
			[]jsonpatch.Op{{Op: "add", Path: "/spec/containers/0/env/3", Value: map[string]any{"name": "A", "value": map[string]any{"x": int64(1)}}}},
			`[{"op":"add","path":"/spec/containers/0/env/3","value":{"name":"A","value":"<redacted>"}}]`},
		{"other paths untouched", SecretPaths,
			[]jsonpatch.Op{{Op: "replace", Path: "/type", Value: "Opaque"}, {Op: "add", Path: "/metadata/labels", Value: map[string]any{"data": "x"}}},
			`[{"op":"replace","path":"/type","value":"Opaque"},{"op":"add","path":"/metadata/labels","value":{"data":"x"}}]`},
	} {
		for _, key := range [][]byte{nil, []byte("key")} {
			name := tc.name + "/marker"
			if key != nil {
				name = tc.name + "/hmac"
			}
			t.Run(name, func(t *testing.T) {
				before := mustJSON(t, tc.ops)
				got := mustJSON(t, NewRedactor(tc.patterns, key).Ops(tc.ops))
				if after := mustJSON(t, tc.ops); after != before {
					t.Errorf("the input patch was modified: %s", after)
				}
				if key == nil {
					if got != tc.want {
						t.Errorf("Ops = %s\nwant  %s", got, tc.want)
					}
					return
				}
				// Same shape, hashes where the marker is.
				parts := strings.Split(tc.want, `"<redacted>"`)
				rest := got
				for i, p := range parts {
					j := strings.Index(rest, p)
					if j < 0 || (i == 0 && j != 0) {
						t.Fatalf("Ops = %s\nwant the shape of %s", got, tc.want)
					}
					if i > 0 && !strings.HasPrefix(rest[:j], `"hmac-sha256:`) {
						t.Fatalf("Ops = %s: %q is not a hash", got, rest[:j])
					}
					rest = rest[j+len(p):]
				}
			})
		}
	}
}

// A consumer holding the redacted old object that applies the redacted patch
// ends with the redacted new object, for a diff that treats redacted paths
// as opaque.
func TestRedactPatchFidelity(t *testing.T) {
	versions := []map[string]any{
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": map[string]any{"a": "MQ==", "b": "Mg=="}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": map[string]any{"a": "MQ==", "b": nil}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": map[string]any{"a": "Mw==", "b": "Mg==", "c": "NA=="}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": map[string]any{"c": "NA=="}, "spec": map[string]any{"secret": map[string]any{"x": int64(1), "y": []any{"a"}}}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": nil, "spec": map[string]any{"secret": map[string]any{"x": int64(2), "y": []any{"a", "b"}}}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s", "annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{}"}}, "spec": map[string]any{"secret": nil}},
		{"kind": "Secret", "metadata": map[string]any{"name": "s"}},
	}
	ps := append(append(Patterns{}, SecretPaths...), MustPattern("/spec/secret"))
	for _, key := range [][]byte{nil, []byte("key")} {
		r := NewRedactor(ps, key)
		o := jsonpatch.Options{Opaque: r.Patterns()}
		held := r.Object(versions[0])
		for i := 1; i < len(versions); i++ {
			ops := r.Ops(o.Diff(versions[i-1], versions[i]))
			pj := mustJSON(t, ops)
			for _, plain := range []string{"MQ==", "Mg==", "Mw==", "NA==", `"x":`, `"{}"`} {
				if strings.Contains(pj, plain) {
					t.Fatalf("key %q, version %d: patch %s holds %s", key, i, pj, plain)
				}
			}
			patch, err := evanphx.DecodePatch([]byte(pj))
			if err != nil {
				t.Fatal(err)
			}
			out, err := patch.Apply([]byte(mustJSON(t, held)))
			if err != nil {
				t.Fatalf("key %q, version %d: apply %s to %s: %v", key, i, pj, mustJSON(t, held), err)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			want := r.Object(versions[i])
			if mustJSON(t, got) != mustJSON(t, want) {
				t.Fatalf("key %q, version %d: patch %s gave %s, want %s", key, i, pj, out, mustJSON(t, want))
			}
			held = got
		}
	}
}

func TestRedactObjectKeepsNull(t *testing.T) {
	obj := map[string]any{"data": map[string]any{"k": nil, "j": "x"}, "stringData": nil}
	got := NewRedactor(SecretPaths, nil).Object(obj)
	want := map[string]any{"data": map[string]any{"k": nil, "j": RedactedMarker}, "stringData": nil}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Object = %v, want %v", got, want)
	}
	var nilR *Redactor
	if nilR.Patterns() != nil || nilR.Object(obj)["data"] == nil {
		t.Error("a nil Redactor redacts nothing")
	}
}
