package jsonpatch_test

import (
	"encoding/json"
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

func ops(t testing.TB, s string) []jsonpatch.Op {
	t.Helper()
	var out []jsonpatch.Op
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("patch %s: %v", s, err)
	}
	return out
}

// applyOwn applies ops with Apply and checks that doc is left as it was.
func applyOwn(t testing.TB, doc any, p []jsonpatch.Op) (any, error) {
	t.Helper()
	before := js(t, doc)
	snapshot := reencode(t, doc)
	got, err := jsonpatch.Apply(doc, p)
	if after := js(t, doc); after != before || !reflect.DeepEqual(reencode(t, doc), snapshot) {
		t.Fatalf("Apply(%s, %s) modified its input: now %s", before, js(t, p), after)
	}
	return got, err
}

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name, doc, patch, want string
		// evanphx/json-patch reads the empty token as the object itself
		// (TestDiffEmptyKey): such cases are not compared with it.
		noRef bool
	}{
		{"no ops", `{"a":1}`, `[]`, `{"a":1}`, false},
		{"add a member", `{"a":1}`, `[{"op":"add","path":"/b","value":{"c":[1]}}]`, `{"a":1,"b":{"c":[1]}}`, false},
		{"add replaces a member", `{"a":1}`, `[{"op":"add","path":"/a","value":2}]`, `{"a":2}`, false},
		{"add null", `{"a":1}`, `[{"op":"add","path":"/b","value":null}]`, `{"a":1,"b":null}`, false},
		{"replace deep", `{"a":{"b":{"c":1,"d":2}}}`, `[{"op":"replace","path":"/a/b/c","value":"x"}]`, `{"a":{"b":{"c":"x","d":2}}}`, false},
		{"replace with null", `{"a":{"b":1}}`, `[{"op":"replace","path":"/a/b","value":null}]`, `{"a":{"b":null}}`, false},
		{"remove a member", `{"a":1,"b":2}`, `[{"op":"remove","path":"/a"}]`, `{"b":2}`, false},
		{"remove a null member", `{"a":null}`, `[{"op":"remove","path":"/a"}]`, `{}`, false},
		{"insert into an array", `{"l":[1,2]}`, `[{"op":"add","path":"/l/1","value":9}]`, `{"l":[1,9,2]}`, false},
		{"add at the array's end", `{"l":[1,2]}`, `[{"op":"add","path":"/l/2","value":9}]`, `{"l":[1,2,9]}`, false},
		{"append with -", `{"l":[1,2]}`, `[{"op":"add","path":"/l/-","value":9},{"op":"add","path":"/l/-","value":10}]`, `{"l":[1,2,9,10]}`, false},
		{"append to an empty array", `{"l":[]}`, `[{"op":"add","path":"/l/-","value":{}}]`, `{"l":[{}]}`, false},
		{"remove from an array", `{"l":[1,2,3]}`, `[{"op":"remove","path":"/l/0"},{"op":"remove","path":"/l/1"}]`, `{"l":[2]}`, false},
		{"replace in an array", `{"l":[{"a":1},{"a":2}]}`, `[{"op":"replace","path":"/l/1/a","value":3}]`, `{"l":[{"a":1},{"a":3}]}`, false},
		{"escaped tokens", `{"a/b":{"c~d":1,"~1":2}}`, `[{"op":"replace","path":"/a~1b/c~0d","value":3},{"op":"remove","path":"/a~1b/~01"}]`, `{"a/b":{"c~d":3}}`, false},
		{"the empty key", `{"":{"":1}}`, `[{"op":"replace","path":"//","value":2}]`, `{"":{"":2}}`, true},
		{"the whole document", `{"a":1}`, `[{"op":"replace","path":"","value":[1]}]`, `[1]`, false},
		{"the whole document, then inside it", `{"a":1}`, `[{"op":"add","path":"","value":{"b":{}}},{"op":"add","path":"/b/c","value":1}]`, `{"b":{"c":1}}`, false},
		{"many ops on one map", `{"m":{"a":1,"b":2,"c":3}}`, `[{"op":"remove","path":"/m/a"},{"op":"replace","path":"/m/b","value":4},{"op":"add","path":"/m/d","value":5},{"op":"add","path":"/m/a","value":6}]`, `{"m":{"a":6,"b":4,"c":3,"d":5}}`, false},
		{"inside a value an op added", `{}`, `[{"op":"add","path":"/a","value":{"l":[1]}},{"op":"add","path":"/a/l/0","value":0},{"op":"add","path":"/a/b","value":2}]`, `{"a":{"l":[0,1],"b":2}}`, false},
		{"a number beyond 2^53", `{"n":1}`, `[{"op":"replace","path":"/n","value":18446744073709551617}]`, `{"n":18446744073709551617}`, false},
		{"an array root", `[1,[2]]`, `[{"op":"add","path":"/1/0","value":3},{"op":"remove","path":"/0"}]`, `[[3,2]]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dec := range decoders {
				doc, p := mustDecode(t, dec.decode, tc.doc), ops(t, tc.patch)
				got, err := applyOwn(t, doc, p)
				if err != nil {
					t.Fatalf("%s: Apply: %v", dec.name, err)
				}
				if want := decode(t, tc.want); !sameJSON(t, got, want) {
					t.Errorf("%s: Apply = %s, want %s", dec.name, js(t, got), tc.want)
				}
				if !tc.noRef {
					if ref, _ := apply(t, p, doc); !sameJSON(t, got, ref) {
						t.Errorf("%s: Apply = %s, evanphx/json-patch %s", dec.name, js(t, got), js(t, ref))
					}
				}
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, patch string
		path             bool // wraps ErrPath
	}{
		{"replace a missing member", `{"a":1}`, `[{"op":"replace","path":"/b","value":1}]`, true},
		{"remove a missing member", `{"a":1}`, `[{"op":"remove","path":"/b"}]`, true},
		{"add below a missing member", `{"a":1}`, `[{"op":"add","path":"/b/c","value":1}]`, true},
		{"below a scalar", `{"a":1}`, `[{"op":"add","path":"/a/b","value":1}]`, true},
		{"below null", `{"a":null}`, `[{"op":"replace","path":"/a/b","value":1}]`, true},
		{"index out of range", `{"l":[1]}`, `[{"op":"replace","path":"/l/1","value":1}]`, true},
		{"insert beyond the end", `{"l":[1]}`, `[{"op":"add","path":"/l/2","value":1}]`, true},
		{"remove beyond the end", `{"l":[]}`, `[{"op":"remove","path":"/l/0"}]`, true},
		{"a leading zero", `{"l":[1,2]}`, `[{"op":"replace","path":"/l/01","value":1}]`, true},
		{"a negative index", `{"l":[1,2]}`, `[{"op":"replace","path":"/l/-1","value":1}]`, true},
		{"a word as index", `{"l":[1,2]}`, `[{"op":"remove","path":"/l/a"}]`, true},
		{"- to replace", `{"l":[1,2]}`, `[{"op":"replace","path":"/l/-","value":1}]`, true},
		{"- to remove", `{"l":[1,2]}`, `[{"op":"remove","path":"/l/-"}]`, true},
		{"- in the middle", `{"l":[[1]]}`, `[{"op":"add","path":"/l/-/0","value":1}]`, true},
		{"no leading slash", `{"a":1}`, `[{"op":"replace","path":"a","value":1}]`, true},
		{"a bad escape", `{"a~2":1}`, `[{"op":"replace","path":"/a~2","value":1}]`, true},
		{"a trailing ~", `{"a~":1}`, `[{"op":"replace","path":"/a~","value":1}]`, true},
		{"remove the whole document", `{"a":1}`, `[{"op":"remove","path":""}]`, true},
		{"move", `{"a":1}`, `[{"op":"move","from":"/a","path":"/b"}]`, false},
		{"test", `{"a":1}`, `[{"op":"test","path":"/a","value":1}]`, false},
		{"a later op fails", `{"a":1}`, `[{"op":"replace","path":"/a","value":2},{"op":"remove","path":"/x"}]`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyOwn(t, decode(t, tc.doc), ops(t, tc.patch))
			if err == nil {
				t.Fatalf("Apply = %s, want an error", js(t, got))
			}
			if got != nil {
				t.Errorf("Apply returned %s with its error", js(t, got))
			}
			if errors.Is(err, jsonpatch.ErrPath) != tc.path {
				t.Errorf("error %q: wraps ErrPath %v, want %v", err, errors.Is(err, jsonpatch.ErrPath), tc.path)
			}
			if !strings.Contains(err.Error(), "patch op ") {
				t.Errorf("error %q does not name the op", err)
			}
		})
	}
}

// Apply copies on write: what it returns shares the untouched parts with
// its input, and writing through a later op never reaches a value an
// earlier op carried (shared with the patch).
func TestApplySharesAndCopies(t *testing.T) {
	keep := map[string]any{"x": int64(1)}
	doc := map[string]any{"keep": keep, "m": map[string]any{"a": int64(1)}, "l": []any{int64(1)}}
	carried := map[string]any{"c": []any{"v"}}
	p := []jsonpatch.Op{
		{Op: jsonpatch.OpAdd, Path: "/n", Value: carried},
		{Op: jsonpatch.OpAdd, Path: "/n/c/-", Value: "w"},
		{Op: jsonpatch.OpReplace, Path: "/n/d", Value: nil},
		{Op: jsonpatch.OpAdd, Path: "/m/b", Value: int64(2)},
		{Op: jsonpatch.OpAdd, Path: "/l/0", Value: int64(0)},
	}
	_, err := jsonpatch.Apply(doc, p)
	if err == nil {
		t.Fatal("replace of a missing member applied")
	}
	p[2].Op = jsonpatch.OpAdd
	got, err := applyOwn(t, doc, p)
	if err != nil {
		t.Fatal(err)
	}
	if js(t, carried) != `{"c":["v"]}` {
		t.Errorf("an op's value was written to: %s", js(t, carried))
	}
	if want := `{"keep":{"x":1},"l":[0,1],"m":{"a":1,"b":2},"n":{"c":["v","w"],"d":null}}`; js(t, got) != want {
		t.Errorf("Apply = %s, want %s", js(t, got), want)
	}
	if reflect.ValueOf(got.(map[string]any)["keep"]).UnsafePointer() != reflect.ValueOf(keep).UnsafePointer() {
		t.Error("an untouched member was copied")
	}
	if same, err := jsonpatch.Apply(doc, nil); err != nil || reflect.ValueOf(same).UnsafePointer() != reflect.ValueOf(doc).UnsafePointer() {
		t.Errorf("an empty patch: %v, want doc itself", err)
	}
}

// Apply(a, Diff(a, b)) is b for random values, and a is left alone.
func TestApplyDiffRandom(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 3000; i++ {
		a, b := randomValue(r, 4), randomValue(r, 4)
		p := jsonpatch.Diff(a, b)
		got, err := applyOwn(t, a, p)
		if err != nil {
			t.Fatalf("Apply(%s, %s): %v", js(t, a), js(t, p), err)
		}
		if !sameJSON(t, got, b) {
			t.Fatalf("Apply(%s, %s) = %s, want %s", js(t, a), js(t, p), js(t, got), js(t, b))
		}
	}
}
