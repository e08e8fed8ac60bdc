package wirejson

import (
	"math"
	"strings"
	"testing"
)

// Integers at every edge come out as kjson gives them: int64 when the
// literal is an integer that fits, float64 otherwise, -0 an int64 0 and
// -0.0 a negative zero.
func TestNumberEdges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`0`, int64(0)}, {`-0`, int64(0)}, {`-0.0`, math.Copysign(0, -1)}, {`0.0`, float64(0)},
		{`100`, int64(100)}, {`1e2`, float64(100)}, {`1E+2`, float64(100)}, {`100.0`, float64(100)},
		{`9223372036854775807`, int64(math.MaxInt64)}, {`9223372036854775808`, float64(1 << 63)},
		{`-9223372036854775808`, int64(math.MinInt64)}, {`-9223372036854775809`, float64(-(1 << 63))},
		{`9999999999999999999`, float64(9999999999999999999)}, {`18446744073709551615`, float64(1 << 64)},
		{`18446744073709551616`, float64(1 << 64)}, {`99999999999999999999`, 1e20},
		{`9007199254740993`, int64(9007199254740993)}, {`-9007199254740993`, int64(-9007199254740993)},
		{`1e308`, 1e308}, {`1e-324`, float64(0)}, {`-1e-324`, math.Copysign(0, -1)},
		{`0.1e-1`, 0.01}, {`123456789012345678901234567890e-10`, 12345678901234567890.1234567890},
	} {
		in := `{"object":{"n":` + tc.in + `}}`
		want, err := oracle([]byte(in), false)
		if err != nil {
			t.Fatalf("%s: kjson: %v", tc.in, err)
		}
		if !equal(want.Object["n"], tc.want) {
			t.Fatalf("%s: kjson gives %#v, the test expects %#v", tc.in, want.Object["n"], tc.want)
		}
		checkEquivalent(t, []byte(in))
	}
	// Out of float64 range, with and without an exponent, and an exponent
	// too long for any integer type: an error, never a value.
	for _, in := range []string{`1e309`, `-1e309`, `1` + strings.Repeat("0", 309), `1e` + strings.Repeat("9", 400), `-1` + strings.Repeat("0", 400) + `.5`} {
		checkEquivalent(t, []byte(`{"object":{"n":`+in+`}}`))
		checkEquivalent(t, []byte(`{"object":{"metadata":{"managedFields":[`+in+`]}}}`))
	}
}
