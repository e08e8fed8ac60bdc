package filters

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/jsonpatch"
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
	ops := []jsonpatch.Op{
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
	_ = r.Ops([]jsonpatch.Op{{Op: "add", Path: "/labels", Value: map[string]string{"x": "y"}}, {Op: "add", Path: "/finalize", Value: []string{"c"}}})
}

// Redacting what is already redacted changes nothing: a state a checkpoint
// kept, redacted, and redacted again when it is sent after a restart,
// shows the value it showed the first time. A value that only looks like a
// hash in part is hashed.
func TestRedactAlreadyRedactedIsUnchanged(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("key")} {
		r := NewRedactor(Patterns{MustPattern("/data/*")}, key)
		once := r.Object(map[string]any{"data": map[string]any{"pw": "hunter2", "n": int64(9007199254740993)}})
		twice := r.Object(once)
		if !reflect.DeepEqual(once, twice) {
			t.Errorf("key %q: redacted %v, again %v", key, once, twice)
		}
		ops := []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/data/pw", Value: once["data"].(map[string]any)["pw"]}}
		if again := r.Ops(ops); !reflect.DeepEqual(again, ops) {
			t.Errorf("key %q: redacted ops %v, again %v", key, ops, again)
		}
	}
	r := NewRedactor(Patterns{MustPattern("/data/*")}, []byte("key"))
	for _, v := range []string{"hmac-sha256:", "hmac-sha256:0123456789abcdef0123456789ABCDEF", "hmac-sha256:0123456789abcdef0123456789abcdef0", "xmac-sha256:0123456789abcdef0123456789abcdef"} {
		got := r.Object(map[string]any{"data": map[string]any{"pw": v}})["data"].(map[string]any)["pw"]
		if got == v {
			t.Errorf("%q was not hashed", v)
		}
	}
}
