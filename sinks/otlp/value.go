package otlp

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// putValue writes a decoded JSON value (what an event's object, patch
// values and data are made of) into dst as an OTLP AnyValue: maps with
// their keys sorted (so that one event always encodes the same), integers
// that fit as int, every other number as double, null as the empty value.
// Unlike pcommon's FromRaw it knows json.Number and never writes an
// "<Invalid value type>" string: anything else goes through encoding/json
// first.
func putValue(dst pcommon.Value, v any) {
	switch x := v.(type) {
	case nil:
	case string:
		dst.SetStr(x)
	case bool:
		dst.SetBool(x)
	case int64:
		dst.SetInt(x)
	case int:
		dst.SetInt(int64(x))
	case int32:
		dst.SetInt(int64(x))
	case float64:
		dst.SetDouble(x)
	case float32:
		dst.SetDouble(float64(x))
	case json.Number:
		putNumber(dst, string(x))
	case map[string]any:
		putMap(dst.SetEmptyMap(), x)
	case []any:
		s := dst.SetEmptySlice()
		s.EnsureCapacity(len(x))
		for _, e := range x {
			putValue(s.AppendEmpty(), e)
		}
	case map[string]string:
		m := dst.SetEmptyMap()
		m.EnsureCapacity(len(x))
		for _, k := range sortedKeys(x) {
			m.PutStr(k, x[k])
		}
	case []string:
		putStrings(dst.SetEmptySlice(), x)
	default:
		putReflected(dst, v)
	}
}

// putMap writes src into the empty map dst, keys sorted.
func putMap(dst pcommon.Map, src map[string]any) {
	dst.EnsureCapacity(len(src))
	for _, k := range sortedKeys(src) {
		putValue(dst.PutEmpty(k), src[k])
	}
}

func putStrings(dst pcommon.Slice, src []string) {
	dst.EnsureCapacity(len(src))
	for _, s := range src {
		dst.AppendEmpty().SetStr(s)
	}
}

// putNumber writes a JSON number literal: an int when it is an integer
// that fits, else a double; an integer beyond int64, or a literal beyond
// float64, stays a string so that no digit is lost.
func putNumber(dst pcommon.Value, lit string) {
	i, err := strconv.ParseInt(lit, 10, 64)
	if err == nil {
		dst.SetInt(i)
		return
	}
	if errors.Is(err, strconv.ErrRange) {
		dst.SetStr(lit)
		return
	}
	if f, err := strconv.ParseFloat(lit, 64); err == nil {
		dst.SetDouble(f)
		return
	}
	dst.SetStr(lit)
}

// putReflected writes a value of another Go type as encoding/json sees
// it; one it cannot encode becomes its error, as a string.
func putReflected(dst pcommon.Value, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		dst.SetStr("unencodable: " + err.Error())
		return
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var generic any
	if err := d.Decode(&generic); err != nil {
		dst.SetStr(string(b))
		return
	}
	putValue(dst, generic)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
