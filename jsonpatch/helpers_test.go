package jsonpatch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// decoder turns JSON text into the values the diff sees.
type decoder struct {
	name   string
	decode func(string) (any, error)
}

var decoders = []decoder{
	{"float64", func(s string) (any, error) {
		var v any
		err := json.Unmarshal([]byte(s), &v)
		return v, err
	}},
	{"json.Number", decodeNumbers},
	// What unstructured.Unstructured holds: int64 where the number is an
	// integer that fits, float64 otherwise.
	{"unstructured", func(s string) (any, error) {
		var v any
		err := utiljson.Unmarshal([]byte(s), &v)
		return v, err
	}},
}

func decodeNumbers(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

func mustDecode(t testing.TB, dec func(string) (any, error), s string) any {
	t.Helper()
	v, err := dec(s)
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// apply applies ops to doc with an independent RFC 6902 implementation and
// returns the result decoded with json.Number.
func apply(t testing.TB, ops []jsonpatch.Op, doc any) (any, string) {
	t.Helper()
	pj, err := json.Marshal(ops)
	if err != nil {
		t.Fatalf("marshal patch: %v", err)
	}
	patch, err := evanphx.DecodePatch(pj)
	if err != nil {
		t.Fatalf("decode patch %s: %v", pj, err)
	}
	dj, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("marshal doc: %v", err)
	}
	out, err := patch.Apply(dj)
	if err != nil {
		t.Fatalf("apply %s to %s: %v", pj, dj, err)
	}
	v, err := decodeNumbers(string(out))
	if err != nil {
		t.Fatalf("patched document %s: %v", out, err)
	}
	return v, string(pj)
}

// sameJSON reports whether a and b write the same JSON value, numbers
// compared by exact value (math/big, independent of the package's equal).
func sameJSON(t testing.TB, a, b any) bool {
	t.Helper()
	x, y := reencode(t, a), reencode(t, b)
	return jsonEqual(x, y)
}

func reencode(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out, err := decodeNumbers(string(b))
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		p, ok1 := new(big.Rat).SetString(string(x))
		q, ok2 := new(big.Rat).SetString(string(y))
		return ok1 && ok2 && p.Cmp(q) == 0
	}
	return a == b
}

// tameNumbers reports whether every number in s has an exponent small
// enough for math/big to compare quickly.
func tameNumbers(s string) bool {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err != nil {
			return true
		}
		if n, ok := tok.(json.Number); ok && len(n) > 400 || ok && strings.ContainsAny(string(n), "eE") && !smallExp(string(n)) {
			return false
		}
	}
}

func smallExp(n string) bool {
	i := strings.IndexAny(n, "eE")
	e := strings.TrimLeft(n[i+1:], "+-0")
	return len(e) <= 3
}

func js(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}
