package filters

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/diff"
)

func TestRedactSecret(t *testing.T) {
	secret := map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "s", "annotations": map[string]any{
			"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"aHVudGVyMg=="}}`, "team": "shop"}},
		"data":       map[string]any{"password": "aHVudGVyMg==", "user": "YWRtaW4="},
		"stringData": map[string]any{"token": "plain-token"},
		"type":       "Opaque",
	}
	before, _ := json.Marshal(secret)
	r := NewRedactor(SecretPaths, nil)
	out := r.Object(secret)
	got, _ := json.Marshal(out)
	for _, plain := range []string{"aHVudGVyMg==", "YWRtaW4=", "plain-token"} {
		if strings.Contains(string(got), plain) {
			t.Errorf("redacted object still holds %q: %s", plain, got)
		}
	}
	if out["type"] != "Opaque" || out["metadata"].(map[string]any)["annotations"].(map[string]any)["team"] != "shop" {
		t.Errorf("redaction touched other fields: %s", got)
	}
	if after, _ := json.Marshal(secret); string(after) != string(before) {
		t.Errorf("the input was modified")
	}
	ops := []diff.Op{
		{Op: "replace", Path: "/data/password", Value: "bmV3"},
		{Op: "add", Path: "/data", Value: map[string]any{"k": "c2VjcmV0"}},
		{Op: "replace", Path: "/metadata/labels/x", Value: "visible"},
		{Op: "remove", Path: "/data/user"},
	}
	rops := r.Ops(ops)
	pj, _ := json.Marshal(rops)
	if strings.Contains(string(pj), "bmV3") || strings.Contains(string(pj), "c2VjcmV0") || !strings.Contains(string(pj), "visible") {
		t.Errorf("redacted patch: %s", pj)
	}
	if ops[0].Value != "bmV3" {
		t.Errorf("the input patch was modified")
	}
}

func TestRedactHashShowsChange(t *testing.T) {
	r := NewRedactor(Patterns{MustPattern("/spec/containers/*/env/*/value")}, []byte("key"))
	obj := func(v string) map[string]any {
		return map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"env": []any{map[string]any{"name": "A", "value": v}}}}}}
	}
	a, b, a2 := r.Object(obj("one")), r.Object(obj("two")), r.Object(obj("one"))
	va := a["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)[0].(map[string]any)
	vb := b["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)[0].(map[string]any)
	va2 := a2["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)[0].(map[string]any)
	if va["value"] == "one" || va["value"] == vb["value"] || va["value"] != va2["value"] || va["name"] != "A" {
		t.Errorf("hashes: %v %v %v", va, vb, va2)
	}
}

// An object built in code may hold maps and slices of concrete types,
// which == cannot compare: redaction walks past them without a panic and
// still redacts what it must.
func TestRedactUncomparableValues(t *testing.T) {
	obj := map[string]any{
		"data":     map[string]any{"password": "aHVudGVyMg=="},
		"labels":   map[string]string{"team": "shop"},
		"finalize": []string{"a", "b"},
	}
	r := NewRedactor(SecretPaths, nil)
	out := r.Object(obj)
	if got, _ := json.Marshal(out); strings.Contains(string(got), "aHVudGVyMg==") || !strings.Contains(string(got), `"team":"shop"`) || !strings.Contains(string(got), `["a","b"]`) {
		t.Errorf("redacted: %s", got)
	}
	_ = r.Ops([]diff.Op{{Op: "add", Path: "/labels", Value: map[string]string{"x": "y"}}, {Op: "add", Path: "/finalize", Value: []string{"c"}}})
}
