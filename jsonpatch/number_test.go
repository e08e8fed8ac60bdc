package jsonpatch_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

func TestNumberEqual(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	for _, tc := range []struct {
		a, b any
		want bool
	}{
		{int64(9007199254740993), int64(9007199254740992), false},
		{int64(9007199254740993), float64(9007199254740992), false},
		{int64(9007199254740992), float64(9007199254740992), true},
		{int64(1), float64(1), true},
		{int64(1), float64(1.5), false},
		{int64(-3), float64(-3), true},
		{int64(math.MaxInt64), int64(math.MaxInt64 - 1), false},
		{int64(math.MaxInt64), float64(math.MaxInt64), false}, // 2^63 as float64 is written 9223372036854775807 + 1
		{int64(math.MinInt64), float64(math.MinInt64), false}, // written -9223372036854776000
		{int64(math.MinInt64), n("-9223372036854775808"), true},
		{int64(1 << 60), float64(1 << 60), false},                 // float64 written 1152921504606847000
		{n("1152921504606847000"), float64(1 << 60), true},        // what it is written as
		{n("9007199254740993"), n("9007199254740992"), false},     // json.Number never through float64
		{n("9007199254740993"), float64(9007199254740992), false}, //
		{n("9007199254740993"), int64(9007199254740993), true},
		{n("18446744073709551617"), n("18446744073709551616"), false},
		{n("18446744073709551615"), uint64(math.MaxUint64), true},
		{n("18446744073709551616"), uint64(math.MaxUint64), false},
		{n("9223372036854775808"), uint64(1 << 63), true},
		{n("1"), n("1.0"), true},
		{n("100"), n("1e2"), true},
		{n("100"), n("1E+2"), true},
		{n("0.001"), n("1e-3"), true},
		{n("0.001"), n("1e-2"), false},
		{n("-0"), n("0"), true},
		{n("0"), float64(0), true},
		{n("-0.0"), math.Copysign(0, -1), true},
		{n("0.1"), float64(0.1), true},
		{n("0.1"), float32(0.1), true},
		{n("1.5"), float64(1.5), true},
		{n("-1.5"), float64(1.5), false},
		{n("1e400"), n("10e399"), true},
		{n("1e400"), float64(math.MaxFloat64), false},
		{n("1e9223372036854775807"), n("1e9223372036854775807"), true},
		{n("10e9223372036854775807"), n("1e9223372036854775808"), false}, // exponent beyond int64: only the same text is equal (an extra op, never a lost one)
		{n("1e99999999999999999999"), n("1e99999999999999999998"), false},
		{n("abc"), n("abc"), true},
		{n("abc"), n("abd"), false},
		{n("1"), "1", false},
		{n("1"), true, false},
		{n("1"), nil, false},
		{int(7), int64(7), true},
		{int32(7), float64(7), true},
		{float64(7), uint64(7), true},
		{math.NaN(), math.NaN(), false},
		{math.Inf(1), math.Inf(1), false},
	} {
		if got := jsonpatch.NumberEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("NumberEqual(%T %v, %T %v) = %v, want %v", tc.a, tc.a, tc.b, tc.b, got, tc.want)
		}
		if got := jsonpatch.NumberEqual(tc.b, tc.a); got != tc.want {
			t.Errorf("NumberEqual(%T %v, %T %v) = %v, want %v (swapped)", tc.b, tc.b, tc.a, tc.a, got, tc.want)
		}
	}
}

// A custom resource's integer field changing beyond 2^53 is a change, as
// unstructured.Unstructured holds it (int64).
func TestDiffBigIntegerCustomResource(t *testing.T) {
	a := map[string]any{"spec": map[string]any{"n": int64(9007199254740993)}}
	b := map[string]any{"spec": map[string]any{"n": int64(9007199254740992)}}
	want := `[{"op":"replace","path":"/spec/n","value":9007199254740992}]`
	if got := js(t, jsonpatch.Diff(a, b)); got != want {
		t.Errorf("Diff = %s, want %s", got, want)
	}
}
