package consumer

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestApplyPatch(t *testing.T) {
	doc := `{"a":{"b":[1,2,3],"x/y":1,"t~":null},"n":18446744073709551617}`
	for _, tc := range []struct {
		name, patch, want, err string
	}{
		{"add to map", `[{"op":"add","path":"/a/c","value":{"d":null}}]`, `{"a":{"b":[1,2,3],"c":{"d":null},"t~":null,"x/y":1},"n":18446744073709551617}`, ""},
		{"add inserts into an array", `[{"op":"add","path":"/a/b/1","value":9}]`, `{"a":{"b":[1,9,2,3],"t~":null,"x/y":1},"n":18446744073709551617}`, ""},
		{"add appends with -", `[{"op":"add","path":"/a/b/-","value":4}]`, `{"a":{"b":[1,2,3,4],"t~":null,"x/y":1},"n":18446744073709551617}`, ""},
		{"escaped keys", `[{"op":"replace","path":"/a/x~1y","value":2},{"op":"remove","path":"/a/t~0"}]`, `{"a":{"b":[1,2,3],"x/y":2},"n":18446744073709551617}`, ""},
		{"remove from array", `[{"op":"remove","path":"/a/b/2"},{"op":"remove","path":"/a/b/0"}]`, `{"a":{"b":[2],"t~":null,"x/y":1},"n":18446744073709551617}`, ""},
		{"replace with explicit null", `[{"op":"replace","path":"/n","value":null}]`, `{"a":{"b":[1,2,3],"t~":null,"x/y":1},"n":null}`, ""},
		{"move and copy", `[{"op":"copy","from":"/a/b","path":"/c"},{"op":"move","from":"/n","path":"/m"}]`, `{"a":{"b":[1,2,3],"t~":null,"x/y":1},"c":[1,2,3],"m":18446744073709551617}`, ""},
		{"test passes", `[{"op":"test","path":"/a/b/0","value":1}]`, doc, ""},
		{"test fails", `[{"op":"test","path":"/a/b/0","value":2}]`, "", "test failed"},
		{"replace a missing key", `[{"op":"replace","path":"/a/zz","value":1}]`, "", "/a/zz: no such key"},
		{"remove a missing key", `[{"op":"remove","path":"/a/b/3"}]`, "", "out of range"},
		{"leading zero index", `[{"op":"remove","path":"/a/b/01"}]`, "", "bad array index"},
		{"through a scalar", `[{"op":"add","path":"/n/x","value":1}]`, "", "not an object or array"},
		{"relative path", `[{"op":"add","path":"a","value":1}]`, "", "does not start with /"},
		{"unknown op", `[{"op":"merge","path":"/a","value":1}]`, "", `unknown op "merge"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d any
			if err := decodeJSON([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			var ops []patchOp
			if err := json.Unmarshal([]byte(tc.patch), &ops); err != nil {
				t.Fatal(err)
			}
			out, err := applyPatch(d, ops)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(out); got != mustJSON(mustDecode(t, tc.want)) {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if mustJSON(d) != mustJSON(mustDecode(t, doc)) {
				t.Errorf("the input document was modified: %s", mustJSON(d))
			}
		})
	}
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := decodeJSON([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}
