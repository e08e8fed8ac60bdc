package jsonpatch

import (
	"encoding/json"
	"math"
	"strconv"
)

// numberEqual reports whether a and b are numbers (int, int32, int64,
// uint64, float32, float64 or json.Number) that denote the same value once
// written as JSON. Integers compare exactly at any size: int64 with int64
// directly, json.Number by its digits, never through float64. A float64
// denotes the number encoding/json writes for it (its shortest round-trip
// decimal), so 1 and 1.0 are equal, and so are 9007199254740992 and
// float64(1<<53), but 9007199254740993 and float64(1<<53) are not. Anything
// else, including a json.Number that is not a number, is equal only to a
// json.Number of the same text.
func numberEqual(a, b any) bool {
	x, ok := toNumber(a)
	if !ok {
		return false
	}
	y, ok := toNumber(b)
	if !ok {
		return false
	}
	switch {
	case x.kind == kindInt && y.kind == kindInt:
		return x.i == y.i
	case x.kind == kindFloat && y.kind == kindFloat:
		return x.f == y.f
	case x.kind == kindInt && y.kind == kindFloat:
		return intFloatEqual(x.i, y.f)
	case x.kind == kindFloat && y.kind == kindInt:
		return intFloatEqual(y.i, x.f)
	}
	if x.kind == kindText && y.kind == kindText && x.s == y.s {
		return true
	}
	return decimalEqual(x.text(), y.text())
}

type numKind uint8

const (
	kindInt numKind = iota
	kindFloat
	kindText // a json.Number or an integer beyond int64
)

type number struct {
	kind numKind
	i    int64
	f    float64
	s    string
}

func (n number) text() string {
	switch n.kind {
	case kindInt:
		return strconv.FormatInt(n.i, 10)
	case kindFloat:
		return strconv.FormatFloat(n.f, 'e', -1, 64)
	}
	return n.s
}

func toNumber(v any) (number, bool) {
	switch n := v.(type) {
	case int64:
		return number{kind: kindInt, i: n}, true
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return number{}, false // not a JSON number
		}
		return number{kind: kindFloat, f: n}, true
	case int:
		return number{kind: kindInt, i: int64(n)}, true
	case int32:
		return number{kind: kindInt, i: int64(n)}, true
	case uint64:
		if n <= math.MaxInt64 {
			return number{kind: kindInt, i: int64(n)}, true
		}
		return number{kind: kindText, s: strconv.FormatUint(n, 10)}, true
	case float32:
		f := float64(n)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return number{}, false
		}
		// encoding/json writes a float32 by its own shortest decimal.
		s := strconv.FormatFloat(f, 'e', -1, 32)
		return number{kind: kindText, s: s}, true
	case json.Number:
		return number{kind: kindText, s: string(n)}, true
	}
	return number{}, false
}

// intFloatEqual compares an int64 with the number a float64 is written as.
func intFloatEqual(i int64, f float64) bool {
	const exact = 1 << 53 // below, every integer is a float64 and written in full
	if f > -exact && f < exact {
		return f == math.Trunc(f) && int64(f) == i
	}
	return decimalEqual(strconv.FormatInt(i, 10), strconv.FormatFloat(f, 'e', -1, 64))
}

// decimal is a JSON number split for exact comparison: its value is
// 0.d1d2d3… × 10^exp, with the significant digits d taken from int then frac
// (leading and trailing zeros excluded by first and last).
type decimal struct {
	neg         bool
	int, frac   string
	first, last int // significant digit range over int+frac; first == last: zero
	exp         int64
}

// decimalEqual compares two number texts by value. Texts that are not JSON
// numbers (or whose exponent does not fit int64) are equal only when
// identical.
func decimalEqual(a, b string) bool {
	x, ok1 := parseDecimal(a)
	y, ok2 := parseDecimal(b)
	if !ok1 || !ok2 {
		return a == b
	}
	zx, zy := x.first == x.last, y.first == y.last
	if zx || zy {
		return zx && zy // -0 == 0
	}
	if x.neg != y.neg || x.exp != y.exp || x.last-x.first != y.last-y.first {
		return false
	}
	for i := 0; i < x.last-x.first; i++ {
		if x.digit(x.first+i) != y.digit(y.first+i) {
			return false
		}
	}
	return true
}

func (d *decimal) digit(i int) byte {
	if i < len(d.int) {
		return d.int[i]
	}
	return d.frac[i-len(d.int)]
}

// parseDecimal splits a JSON number (also accepting what strconv writes: a
// leading "+" in exponents, leading zeros).
func parseDecimal(s string) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	d.int = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		d.frac = s[fs:i]
		if d.frac == "" {
			return d, false
		}
	}
	if d.int == "" {
		return d, false
	}
	var e int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		var err error
		if e, err = strconv.ParseInt(s[i+1:], 10, 64); err != nil {
			return d, false
		}
		i = len(s)
	}
	if i != len(s) {
		return d, false
	}
	n := len(d.int) + len(d.frac)
	for d.first < n && d.digit(d.first) == '0' {
		d.first++
	}
	d.last = n
	for d.last > d.first && d.digit(d.last-1) == '0' {
		d.last--
	}
	if d.first == d.last {
		return d, true
	}
	// value = digits[first:last] × 10^(len(int) - first - k), k digits: the
	// position of the point relative to the first significant digit.
	pos := int64(len(d.int) - d.first)
	if (e > 0 && pos > math.MaxInt64-e) || (e < 0 && pos < math.MinInt64-e) {
		return d, false
	}
	d.exp = pos + e
	return d, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
