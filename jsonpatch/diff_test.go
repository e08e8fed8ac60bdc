package jsonpatch_test

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

func decode(t testing.TB, s string) any { return mustDecode(t, decodeNumbers, s) }

// applies checks that applying Diff(a, b) to a gives b, through an
// independent RFC 6902 implementation and through Apply (which leaves a
// alone), and that Diff(a, a) is empty.
func applies(t *testing.T, a, b any) []jsonpatch.Op {
	t.Helper()
	ops := jsonpatch.Diff(a, b)
	got, pj := apply(t, ops, a)
	if !sameJSON(t, got, b) {
		t.Fatalf("patch %s on %s gave %s, want %s", pj, js(t, a), js(t, got), js(t, b))
	}
	if own, err := applyOwn(t, a, ops); err != nil || !sameJSON(t, own, b) {
		t.Fatalf("Apply(%s, %s) = %s, %v; want %s", js(t, a), pj, js(t, own), err, js(t, b))
	}
	if ops := jsonpatch.Diff(a, a); len(ops) != 0 {
		t.Fatalf("Diff(a, a) = %s, want none", js(t, ops))
	}
	return ops
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		want       string
	}{
		{"equal", `{"a":1}`, `{"a":1}`, `null`},
		{"replace scalar", `{"spec":{"replicas":1}}`, `{"spec":{"replicas":3}}`, `[{"op":"replace","path":"/spec/replicas","value":3}]`},
		{"add and remove keys", `{"a":1,"b":2}`, `{"b":2,"c":3}`, `[{"op":"remove","path":"/a"},{"op":"add","path":"/c","value":3}]`},
		{"escaped keys", `{"m":{"a/b":1,"c~d":1}}`, `{"m":{"a/b":2,"c~d":2}}`, `[{"op":"replace","path":"/m/a~1b","value":2},{"op":"replace","path":"/m/c~0d","value":2}]`},
		{"escaped keys added and removed", `{"m":{"~1":1}}`, `{"m":{"/~":{"x/y":1}}}`, `[{"op":"add","path":"/m/~1~0","value":{"x/y":1}},{"op":"remove","path":"/m/~01"}]`},
		{"list grows", `{"l":[1,2]}`, `{"l":[1,2,3,4]}`, `[{"op":"add","path":"/l/2","value":3},{"op":"add","path":"/l/3","value":4}]`},
		{"list shrinks from the end", `{"l":[1,2,3]}`, `{"l":[9]}`, `[{"op":"replace","path":"/l/0","value":9},{"op":"remove","path":"/l/2"},{"op":"remove","path":"/l/1"}]`},
		{"nested arrays", `{"l":[[1,2],[3]]}`, `{"l":[[1],[3,4],[5]]}`, `[{"op":"remove","path":"/l/0/1"},{"op":"add","path":"/l/1/1","value":4},{"op":"add","path":"/l/2","value":[5]}]`},
		{"array of maps grows", `{"c":[{"n":"a"}]}`, `{"c":[{"n":"a","x":null},{"n":"b"}]}`, `[{"op":"add","path":"/c/0/x","value":null},{"op":"add","path":"/c/1","value":{"n":"b"}}]`},
		{"array of maps shrinks", `{"c":[{"n":"a"},{"n":"b"},{"n":"c"}]}`, `{"c":[{"n":"b"}]}`, `[{"op":"replace","path":"/c/0/n","value":"b"},{"op":"remove","path":"/c/2"},{"op":"remove","path":"/c/1"}]`},
		{"map to scalar", `{"a":{"x":1}}`, `{"a":"x"}`, `[{"op":"replace","path":"/a","value":"x"}]`},
		{"map to array", `{"a":{"x":1}}`, `{"a":[1]}`, `[{"op":"replace","path":"/a","value":[1]}]`},
		{"empty map to empty array", `{"a":{}}`, `{"a":[]}`, `[{"op":"replace","path":"/a","value":[]}]`},
		{"scalar to null", `{"spec":{"nest":"x"}}`, `{"spec":{"nest":null}}`, `[{"op":"replace","path":"/spec/nest","value":null}]`},
		{"map to null", `{"spec":{"nest":{"a":1}}}`, `{"spec":{"nest":null}}`, `[{"op":"replace","path":"/spec/nest","value":null}]`},
		{"null to scalar", `{"a":null}`, `{"a":1}`, `[{"op":"replace","path":"/a","value":1}]`},
		{"null added", `{}`, `{"a":null}`, `[{"op":"add","path":"/a","value":null}]`},
		{"null element added", `{"l":[]}`, `{"l":[null]}`, `[{"op":"add","path":"/l/0","value":null}]`},
		{"null removed", `{"a":null}`, `{}`, `[{"op":"remove","path":"/a"}]`},
		{"null to false", `{"a":null}`, `{"a":false}`, `[{"op":"replace","path":"/a","value":false}]`},
		{"empty map added", `{}`, `{"a":{}}`, `[{"op":"add","path":"/a","value":{}}]`},
		{"empty map removed", `{"a":{}}`, `{}`, `[{"op":"remove","path":"/a"}]`},
		{"empty map filled", `{"a":{}}`, `{"a":{"b":{}}}`, `[{"op":"add","path":"/a/b","value":{}}]`},
		{"string that looks like a number", `{"a":"1"}`, `{"a":1}`, `[{"op":"replace","path":"/a","value":1}]`},
		{"int and float equal", `{"a":1}`, `{"a":1.0}`, `null`},
		{"beyond 2^53", `{"a":9007199254740993}`, `{"a":9007199254740992}`, `[{"op":"replace","path":"/a","value":9007199254740992}]`},
		{"beyond int64", `{"a":18446744073709551617}`, `{"a":18446744073709551616}`, `[{"op":"replace","path":"/a","value":18446744073709551616}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := applies(t, decode(t, tc.a), decode(t, tc.b))
			if got := js(t, ops); got != tc.want {
				t.Errorf("Diff = %s, want %s", got, tc.want)
			}
		})
	}
}

// Objects as unstructured holds them: int64 and float64 mixed.
func TestDiffUnstructuredNumbers(t *testing.T) {
	unstr := decoders[2].decode
	for _, tc := range []struct {
		name, a, b string
		want       string
	}{
		{"int64 beyond 2^53", `{"spec":{"n":9007199254740993}}`, `{"spec":{"n":9007199254740992}}`, `[{"op":"replace","path":"/spec/n","value":9007199254740992}]`},
		{"int64 max", `{"n":9223372036854775807}`, `{"n":9223372036854775806}`, `[{"op":"replace","path":"/n","value":9223372036854775806}]`},
		{"int64 min", `{"n":-9223372036854775808}`, `{"n":-9223372036854775807}`, `[{"op":"replace","path":"/n","value":-9223372036854775807}]`},
		{"int becomes float of the same value", `{"n":3}`, `{"n":3.0}`, `null`},
		{"int becomes float", `{"n":3}`, `{"n":3.5}`, `[{"op":"replace","path":"/n","value":3.5}]`},
		{"negative zero", `{"n":0}`, `{"n":-0.0}`, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := applies(t, mustDecode(t, unstr, tc.a), mustDecode(t, unstr, tc.b))
			if got := js(t, ops); got != tc.want {
				t.Errorf("Diff = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestOpJSON(t *testing.T) {
	ops := []jsonpatch.Op{
		{Op: jsonpatch.OpAdd, Path: "/a", Value: nil},
		{Op: jsonpatch.OpReplace, Path: "/b", Value: nil},
		{Op: jsonpatch.OpRemove, Path: "/c", Value: "ignored"},
		{Op: jsonpatch.OpReplace, Path: "/d", Value: json.Number("123456789012345678901234567890")},
		{Op: jsonpatch.OpAdd, Path: "/e", Value: map[string]any{"n": nil}},
	}
	want := `[{"op":"add","path":"/a","value":null},{"op":"replace","path":"/b","value":null},{"op":"remove","path":"/c"},{"op":"replace","path":"/d","value":123456789012345678901234567890},{"op":"add","path":"/e","value":{"n":null}}]`
	if got := js(t, ops); got != want {
		t.Fatalf("marshal = %s\nwant %s", got, want)
	}
	var back []jsonpatch.Op
	if err := json.Unmarshal([]byte(want), &back); err != nil {
		t.Fatal(err)
	}
	if got := js(t, back); got != want {
		t.Errorf("round trip = %s\nwant %s", got, want)
	}
	if err := json.Unmarshal([]byte(`[{"op":"add","path":"/a","value":01}]`), &back); err == nil {
		t.Error("a bad value was accepted")
	}
}

func TestChangedPaths(t *testing.T) {
	ops := jsonpatch.Diff(decode(t, `{"spec":{"a":1},"status":{"b":[1]},"m":{"x/y":1}}`), decode(t, `{"spec":{"a":2},"status":{"b":[]},"m":{"x/y":2}}`))
	got := jsonpatch.ChangedPaths(ops)
	want := []string{"/m/x~1y", "/spec/a", "/status/b/0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ChangedPaths = %v, want %v", got, want)
	}
	if got := jsonpatch.ChangedPaths([]jsonpatch.Op{{Op: "add", Path: "/s"}, {Op: "remove", Path: "/s"}}); !reflect.DeepEqual(got, []string{"/s"}) {
		t.Errorf("ChangedPaths repeats a path: %v", got)
	}
}

// evanphx/json-patch reads an empty reference token as the object itself,
// against RFC 6901, so empty keys are checked here without it.
func TestDiffEmptyKey(t *testing.T) {
	ops := jsonpatch.Diff(decode(t, `{"":{"":1,"a":1}}`), decode(t, `{"":{"":2},"b":{"":null}}`))
	want := `[{"op":"replace","path":"//","value":2},{"op":"remove","path":"//a"},{"op":"add","path":"/b","value":{"":null}}]`
	if got := js(t, ops); got != want {
		t.Errorf("Diff = %s, want %s", got, want)
	}
}

func TestPointer(t *testing.T) {
	for _, tc := range []struct {
		toks []string
		want string
	}{
		{nil, ""},
		{[]string{""}, "/"},
		{[]string{"a/b", "c~d", "~1", "0"}, "/a~1b/c~0d/~01/0"},
	} {
		if got := jsonpatch.Pointer(tc.toks); got != tc.want {
			t.Errorf("Pointer(%q) = %q, want %q", tc.toks, got, tc.want)
		}
	}
}

// randomValue builds a random JSON-like value of bounded depth.
func randomValue(r *rand.Rand, depth int) any {
	switch k := r.Intn(7); {
	case depth == 0 || k == 0:
		return []any{float64(r.Intn(3)), int64(r.Intn(3)), nil, json.Number("9007199254740993"), true}[r.Intn(5)]
	case k == 1:
		return "s" + strconv.Itoa(r.Intn(3))
	case k == 2:
		l := make([]any, r.Intn(4))
		for i := range l {
			l[i] = randomValue(r, depth-1)
		}
		return l
	default:
		m := map[string]any{}
		for i, n := 0, r.Intn(4); i < n; i++ {
			m[randomKeys[r.Intn(len(randomKeys))]] = randomValue(r, depth-1)
		}
		return m
	}
}

var randomKeys = []string{"a", "b/c", "d~e", "f", "ping"}

// randomIgnore covers ignored leaves, whole maps, array elements, "*" and
// escaped keys over randomKeys.
var randomIgnore = filters.Patterns{
	filters.MustPattern("/x/a/ping"),
	filters.MustPattern("/x/*/d~0e"),
	filters.MustPattern("/x/f/1"),
	filters.MustPattern("/x/b~1c/*/ping"),
	filters.MustPattern("/x/ping"),
}

func TestDiffRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	o := jsonpatch.Options{Ignore: randomIgnore}
	for i := 0; i < 3000; i++ {
		a, b := map[string]any{"x": randomValue(r, 4)}, map[string]any{"x": randomValue(r, 4)}
		applies(t, a, b)
		checkIgnore(t, o, a, b)
	}
}

// Events carry the patch through Op.MarshalJSON, as JSON sinks write them.
func TestOpInEvent(t *testing.T) {
	d := &event.ChangeData{Patch: []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/spec/nest", Value: nil}, {Op: jsonpatch.OpAdd, Path: "/a", Value: "<b>"}, {Op: jsonpatch.OpRemove, Path: "/c"}}}
	b, err := event.Marshal(&event.Event{ID: "x", Data: d})
	if err != nil {
		t.Fatal(err)
	}
	want := `"patch":[{"op":"replace","path":"/spec/nest","value":null},{"op":"add","path":"/a","value":"<b>"},{"op":"remove","path":"/c"}]`
	if !strings.Contains(string(b), want) {
		t.Errorf("event %s\nwant it to hold %s", b, want)
	}
}
