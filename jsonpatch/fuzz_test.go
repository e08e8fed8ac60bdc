package jsonpatch_test

import (
	"testing"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// fuzzIgnore covers ignored leaves, whole maps, array elements, "*" and
// escaped keys over the keys of the seed corpus.
var fuzzIgnore = jsonpatch.Options{Ignore: patternsOf(
	"/metadata/annotations/ping",
	"/metadata/resourceVersion",
	"/status/conditions/*/lastHeartbeatTime",
	"/a/*/x",
	"/l/1",
	"/k~1s/~0t",
	"/n/*/*/ping",
)}

var fuzzSeeds = [][2]string{
	{`{}`, `{}`},
	{`{"a":1}`, `{"a":1.0}`},
	{`{"n":9007199254740993}`, `{"n":9007199254740992}`},
	{`{"n":-9223372036854775808}`, `{"n":9223372036854775807}`},
	{`{"n":18446744073709551617}`, `{"n":18446744073709551616}`},
	{`{"n":1e2,"m":0.1}`, `{"n":100,"m":1e-1}`},
	{`{"n":1.5e300}`, `{"n":-0}`},
	{`{"spec":{"nest":{"a":1}}}`, `{"spec":{"nest":null}}`},
	{`{"a":null}`, `{}`},
	{`{"a":{}}`, `{"a":[]}`},
	{`{"a":{"x":1}}`, `{"a":"x"}`},
	{`{"m":{"a/b":1,"c~d":{"~1":[1]}}}`, `{"m":{"a/b":[2],"c~d":{"/":null}}}`},
	{`{"l":[[1,2],[3]]}`, `{"l":[[1],[3,4],[5]]}`},
	{`{"c":[{"n":"a"},{"n":"b"},{"n":"c"}]}`, `{"c":[{"n":"b","x":[{}]}]}`},
	{`{"metadata":{"name":"c"}}`, `{"metadata":{"name":"c","annotations":{"ping":"1"}}}`},
	{`{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `{"metadata":{"name":"c","annotations":{"ping":"2","foo":"x"}}}`},
	{`{"metadata":{"annotations":{}}}`, `{"metadata":{"annotations":{"ping":1}}}`},
	{`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"}]}}`, `{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"2"},{"lastHeartbeatTime":"2"}]}}`},
	{`{"a":{"p":{"x":1},"q":{"x":1,"y":2}}}`, `{"a":{"p":{"x":2},"q":{"x":3}}}`},
	{`{"l":[0,1,2]}`, `{"l":[0,{"x":1}]}`},
	{`{"k/s":{"~t":1,"u":2}}`, `{"k/s":{"~t":2}}`},
	{`{"n":{"a":[{"ping":1}],"b":{"c":{"ping":1}}}}`, `{"n":{"a":[{"ping":2}],"b":{"c":{"ping":1,"d":[null]}}}}`},
	{`[1,{"a":2}]`, `{"a":[true,false]}`},
	{`"s"`, `null`},
}

// FuzzDiff checks, for any two JSON documents decoded three ways (float64,
// json.Number, and int64-or-float64 as unstructured.Unstructured holds
// them), that applying Diff(a, b) to a yields b with every number exact,
// and that under ignored paths the patch turns proj(a) into proj(b).
func FuzzDiff(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !tameNumbers(a) || !tameNumbers(b) {
			return // math/big would take too long to check the result
		}
		for _, dec := range decoders {
			va, err1 := dec.decode(a)
			vb, err2 := dec.decode(b)
			if err1 != nil || err2 != nil {
				continue
			}
			if hasEmptyKey(va) || hasEmptyKey(vb) {
				return // evanphx/json-patch cannot address them (TestDiffEmptyKey)
			}
			// A patch addresses members of the root: wrap other roots.
			if _, ok := va.(map[string]any); !ok {
				va = map[string]any{"r": va}
			}
			if _, ok := vb.(map[string]any); !ok {
				vb = map[string]any{"r": vb}
			}
			applies(t, va, vb)
			checkIgnore(t, fuzzIgnore, va, vb)
		}
	})
}

func hasEmptyKey(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if k == "" || hasEmptyKey(c) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if hasEmptyKey(c) {
				return true
			}
		}
	}
	return false
}
