package diff_test

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"strconv"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/kubefeed/kubefeed/exporter/diff"
)

func decode(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// applies checks that applying Diff(a, b) to a gives b, through an
// independent RFC 6902 implementation.
func applies(t *testing.T, a, b any) []diff.Op {
	t.Helper()
	ops := diff.Diff(a, b)
	pj, _ := json.Marshal(ops)
	patch, err := jsonpatch.DecodePatch(pj)
	if err != nil {
		t.Fatalf("decode patch %s: %v", pj, err)
	}
	aj, _ := json.Marshal(a)
	out, err := patch.Apply(aj)
	if err != nil {
		t.Fatalf("apply %s to %s: %v", pj, aj, err)
	}
	var got any
	_ = json.Unmarshal(out, &got)
	bj, _ := json.Marshal(b)
	var want any
	_ = json.Unmarshal(bj, &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("patch %s on %s gave %s, want %s", pj, aj, out, bj)
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
		{"list grows", `{"l":[1,2]}`, `{"l":[1,2,3,4]}`, `[{"op":"add","path":"/l/2","value":3},{"op":"add","path":"/l/3","value":4}]`},
		{"list shrinks from the end", `{"l":[1,2,3]}`, `{"l":[9]}`, `[{"op":"replace","path":"/l/0","value":9},{"op":"remove","path":"/l/2"},{"op":"remove","path":"/l/1"}]`},
		{"type change", `{"a":{"x":1}}`, `{"a":[1]}`, `[{"op":"replace","path":"/a","value":[1]}]`},
		{"null value", `{"a":null}`, `{"a":1}`, `[{"op":"replace","path":"/a","value":1}]`},
		{"int and float equal", `{"a":1}`, `{"a":1.0}`, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := applies(t, decode(t, tc.a), decode(t, tc.b))
			got, _ := json.Marshal(ops)
			if string(got) != tc.want {
				t.Errorf("Diff = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestChangedPaths(t *testing.T) {
	ops := diff.Diff(decode(t, `{"spec":{"a":1},"status":{"b":[1]}}`), decode(t, `{"spec":{"a":2},"status":{"b":[]}}`))
	got := diff.ChangedPaths(ops)
	want := []string{"/spec/a", "/status/b/0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ChangedPaths = %v, want %v", got, want)
	}
}

// randomValue builds a random JSON-like value of bounded depth.
func randomValue(r *rand.Rand, depth int) any {
	switch k := r.Intn(6); {
	case depth == 0 || k == 0:
		return float64(r.Intn(3))
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
			m[[]string{"a", "b/c", "d~e", "f"}[r.Intn(4)]] = randomValue(r, depth-1)
		}
		return m
	}
}

func TestDiffRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		a, b := map[string]any{"x": randomValue(r, 4)}, map[string]any{"x": randomValue(r, 4)}
		applies(t, a, b)
		if ops := diff.Diff(a, a); len(ops) != 0 {
			t.Fatalf("Diff(a, a) = %v, want none", ops)
		}
	}
}
