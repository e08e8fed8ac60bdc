package jsonpatch_test

import (
	"strconv"
	"testing"

	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// checkIgnore checks the patch fidelity promise under ignored paths:
// applied to the projection of a the patch gives the projection of b;
// applied to a itself it gives b apart from ignored paths; it addresses no
// ignored path; and it is empty when only ignored paths changed.
func checkIgnore(t *testing.T, o jsonpatch.Options, a, b any) []jsonpatch.Op {
	t.Helper()
	ops := o.Diff(a, b)
	pa, pb := o.Project(a), o.Project(b)
	if pa == nil || pb == nil {
		if len(ops) != 0 {
			t.Fatalf("the whole value is ignored, yet patch %s", js(t, ops))
		}
		return ops
	}
	got, pj := apply(t, ops, pa)
	if !sameJSON(t, got, pb) {
		t.Fatalf("patch %s on proj(a) %s gave %s, want proj(b) %s\na=%s\nb=%s", pj, js(t, pa), js(t, got), js(t, pb), js(t, a), js(t, b))
	}
	got, _ = apply(t, ops, a)
	m := o.Ignore
	if m == nil {
		m = filters.Patterns{}
	}
	if !sameApartFromIgnored(t, m, nil, reencode(t, got), reencode(t, b)) {
		t.Fatalf("patch %s on a %s gave %s, want %s apart from ignored paths", pj, js(t, a), js(t, got), js(t, b))
	}
	if sameJSON(t, pa, pb) && len(ops) != 0 {
		t.Fatalf("only ignored paths changed, yet patch %s\na=%s\nb=%s", pj, js(t, a), js(t, b))
	}
	if ps, ok := o.Ignore.(filters.Patterns); ok {
		for _, op := range ops {
			// Removing the end of an array, or holding the place of an
			// ignored element with null, may address an ignored index.
			placeholder := op.Op == jsonpatch.OpRemove || op.Op == jsonpatch.OpAdd && op.Value == nil
			if ps.Match(op.Path) && !placeholder {
				t.Fatalf("patch %s addresses ignored path %s", pj, op.Path)
			}
		}
	}
	if ops := o.Diff(a, a); len(ops) != 0 {
		t.Fatalf("Diff(a, a) = %s, want none", js(t, ops))
	}
	return ops
}

// sameApartFromIgnored compares two values (decoded with json.Number)
// apart from ignored paths: ignored members and elements are not compared,
// and where only one side has a member, the other's must hold nothing but
// ignored paths (a map emptied by ignoring, or an empty map below which
// something is ignored).
func sameApartFromIgnored(t testing.TB, m jsonpatch.Matcher, toks []string, a, b any) bool {
	if m.MatchTokens(toks) {
		return true
	}
	if !m.BelowTokens(toks) {
		return jsonEqual(a, b)
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range x {
			c := append(toks[:len(toks):len(toks)], k)
			w, ok := y[k]
			if ok && !sameApartFromIgnored(t, m, c, v, w) || !ok && !invisible(m, c, v) {
				return false
			}
		}
		for k, w := range y {
			if _, ok := x[k]; !ok && !invisible(m, append(toks[:len(toks):len(toks)], k), w) {
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
			if !sameApartFromIgnored(t, m, append(toks[:len(toks):len(toks)], strconv.Itoa(i)), x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return jsonEqual(a, b)
}

// invisible reports whether v at toks holds only ignored paths.
func invisible(m jsonpatch.Matcher, toks []string, v any) bool {
	if m.MatchTokens(toks) {
		return true
	}
	x, ok := v.(map[string]any)
	if !ok || !m.BelowTokens(toks) {
		return false
	}
	for k, c := range x {
		if !invisible(m, append(toks[:len(toks):len(toks)], k), c) {
			return false
		}
	}
	return true
}

func patternsOf(ss ...string) filters.Patterns {
	ps := make(filters.Patterns, 0, len(ss))
	for _, s := range ss {
		ps = append(ps, filters.MustPattern(s))
	}
	return ps
}

func patterns(t testing.TB, ss ...string) filters.Patterns {
	t.Helper()
	ps, err := filters.ParsePatterns(ss)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestDiffIgnore(t *testing.T) {
	ping := []string{"/metadata/annotations/ping"}
	hb := []string{"/status/conditions/*/lastHeartbeatTime"}
	for _, tc := range []struct {
		name   string
		ignore []string
		a, b   string
		want   string
	}{
		{"ignored annotation added to an object without annotations", ping,
			`{"metadata":{"name":"c"}}`, `{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `null`},
		{"ignored annotation changed", ping,
			`{"metadata":{"annotations":{"ping":"1","foo":"x"}}}`, `{"metadata":{"annotations":{"ping":"2","foo":"x"}}}`, `null`},
		{"ignored annotation removed with its map", ping,
			`{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `{"metadata":{"name":"c"}}`, `null`},
		{"annotation added next to an ignored one adds the map", ping,
			`{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `{"metadata":{"name":"c","annotations":{"ping":"1","foo":"x"}}}`, `[{"op":"add","path":"/metadata/annotations","value":{"foo":"x"}}]`},
		{"last visible annotation removed removes the map", ping,
			`{"metadata":{"name":"c","annotations":{"ping":"1","foo":"x"}}}`, `{"metadata":{"name":"c","annotations":{"ping":"2"}}}`, `[{"op":"remove","path":"/metadata/annotations"}]`},
		{"visible annotation changed next to an ignored one", ping,
			`{"metadata":{"annotations":{"ping":"1","foo":"x"}}}`, `{"metadata":{"annotations":{"ping":"2","foo":"y"}}}`, `[{"op":"replace","path":"/metadata/annotations/foo","value":"y"}]`},
		{"map added with ignored and visible keys", ping,
			`{"metadata":{}}`, `{"metadata":{"annotations":{"ping":"1","foo":"x"}}}`, `[{"op":"add","path":"/metadata/annotations","value":{"foo":"x"}}]`},
		{"metadata emptied by ignoring counts as absent too", ping,
			`{}`, `{"metadata":{"annotations":{"ping":"1"}}}`, `null`},
		{"whole metadata added holding only ignored paths", ping,
			`{}`, `{"metadata":{"annotations":{"ping":"1"}}}`, `null`},
		{"an empty map is not an emptied one", ping,
			`{"metadata":{"name":"c","annotations":{}}}`, `{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `[{"op":"remove","path":"/metadata/annotations"}]`},
		{"emptied map becomes a scalar", ping,
			`{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `{"metadata":{"name":"c","annotations":"x"}}`, `[{"op":"add","path":"/metadata/annotations","value":"x"}]`},
		{"emptied map becomes null", ping,
			`{"metadata":{"name":"c","annotations":{"ping":"1"}}}`, `{"metadata":{"name":"c","annotations":null}}`, `[{"op":"add","path":"/metadata/annotations","value":null}]`},
		{"heartbeats only", hb,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"},{"type":"B","lastHeartbeatTime":"1"}]}}`,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"2"},{"type":"B","lastHeartbeatTime":"2"}]}}`, `null`},
		{"condition added carries no heartbeat", hb,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"}]}}`,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"2"},{"type":"B","lastHeartbeatTime":"2"}]}}`, `[{"op":"add","path":"/status/conditions/1","value":{"type":"B"}}]`},
		{"status added as a whole", hb,
			`{"spec":{}}`, `{"spec":{},"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"}]}}`, `[{"op":"add","path":"/status","value":{"conditions":[{"type":"A"}]}}]`},
		{"element emptied by ignoring stays an empty map", hb,
			`{"status":{"conditions":[]}}`, `{"status":{"conditions":[{"lastHeartbeatTime":"1"}]}}`, `[{"op":"add","path":"/status/conditions/0","value":{}}]`},
		{"condition shrinks", hb,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"},{"type":"B"}]}}`, `{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"3"}]}}`, `[{"op":"remove","path":"/status/conditions/1"}]`},
		{"conditions become a scalar", hb,
			`{"status":{"conditions":[{"type":"A","lastHeartbeatTime":"1"}]}}`, `{"status":{"conditions":"x"}}`, `[{"op":"replace","path":"/status/conditions","value":"x"}]`},
		{"ignored array element", []string{"/spec/l/1"},
			`{"spec":{"l":[1,2,3]}}`, `{"spec":{"l":[1,5,3]}}`, `null`},
		{"ignored array element added is null", []string{"/spec/l/1"},
			`{"spec":{"l":[1]}}`, `{"spec":{"l":[1,{"x":1},3]}}`, `[{"op":"add","path":"/spec/l/1","value":null},{"op":"add","path":"/spec/l/2","value":3}]`},
		{"array of maps added with ignored leaves", []string{"/spec/l/*/x"},
			`{"spec":{}}`, `{"spec":{"l":[{"x":1,"y":[{"x":2}]}]}}`, `[{"op":"add","path":"/spec/l","value":[{"y":[{"x":2}]}]}]`},
		{"escaped keys", []string{"/metadata/annotations/a~1b", "/metadata/labels/~0t"},
			`{"metadata":{"annotations":{"a/b":"1","a~1b":"1"},"labels":{"~t":"1"}}}`, `{"metadata":{"annotations":{"a/b":"2","a~1b":"2"},"labels":{"~t":"2"}}}`,
			`[{"op":"replace","path":"/metadata/annotations/a~01b","value":"2"}]`},
		{"star over map keys", []string{"/metadata/*/ping"},
			`{"metadata":{"labels":{"ping":"1"}}}`, `{"metadata":{"labels":{"ping":"2"},"annotations":{"ping":"1"}}}`, `null`},
		{"ignored big integer", []string{"/status/observed"},
			`{"status":{"observed":9007199254740993,"n":9007199254740993}}`, `{"status":{"observed":9007199254740992,"n":9007199254740992}}`, `[{"op":"replace","path":"/status/n","value":9007199254740992}]`},
		{"whole root ignored", []string{"/"}, `{"a":1}`, `{"a":2}`, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := jsonpatch.Options{Ignore: patterns(t, tc.ignore...)}
			ops := checkIgnore(t, o, decode(t, tc.a), decode(t, tc.b))
			if got := js(t, ops); got != tc.want {
				t.Errorf("Diff = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

// After a suppressed change the consumer still holds the older version; the
// next patch must apply to it (SPEC: patch fidelity).
func TestDiffIgnoreSequence(t *testing.T) {
	o := jsonpatch.Options{Ignore: patterns(t, "/metadata/annotations/ping", "/metadata/resourceVersion")}
	versions := []string{
		`{"metadata":{"name":"c","resourceVersion":"1"},"data":{"k":"v"}}`,
		`{"metadata":{"name":"c","resourceVersion":"2","annotations":{"ping":"1"}},"data":{"k":"v"}}`,
		`{"metadata":{"name":"c","resourceVersion":"3","annotations":{"ping":"1","foo":"x"}},"data":{"k":"v"}}`,
		`{"metadata":{"name":"c","resourceVersion":"4","annotations":{"ping":"2","foo":"x"}},"data":{"k":"v"}}`,
		`{"metadata":{"name":"c","resourceVersion":"5","annotations":{"ping":"2"}},"data":{"k":"w"}}`,
		`{"metadata":{"name":"c","resourceVersion":"6","annotations":{"bar":"y"}},"data":{"k":"w"}}`,
		`{"metadata":{"name":"c","resourceVersion":"7"},"data":{"k":"w"}}`,
	}
	held := decode(t, versions[0])
	prev := held
	for i, s := range versions[1:] {
		cur := decode(t, s)
		ops := o.Diff(prev, cur)
		var pj string
		held, pj = apply(t, ops, held)
		if !sameJSON(t, o.Project(held), o.Project(cur)) {
			t.Fatalf("version %d: patch %s left the consumer with %s, want %s apart from ignored paths", i+2, pj, js(t, held), s)
		}
		prev = cur
	}
}

func TestDiffOpaque(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opaque, ign []string
		a, b        string
		want        string
	}{
		{"change inside an opaque value is one replace", []string{"/spec/secret"}, nil,
			`{"spec":{"secret":{"a":1,"b":[1]}}}`, `{"spec":{"secret":{"a":2,"b":[1,2]}}}`, `[{"op":"replace","path":"/spec/secret","value":{"a":2,"b":[1,2]}}]`},
		{"opaque values keyed by star", []string{"/data/*"}, nil,
			`{"data":{"k":{"x":1},"j":"1"}}`, `{"data":{"k":{"x":2},"l":"2"}}`, `[{"op":"remove","path":"/data/j"},{"op":"replace","path":"/data/k","value":{"x":2}},{"op":"add","path":"/data/l","value":"2"}]`},
		{"unchanged opaque value", []string{"/spec/secret"}, nil,
			`{"spec":{"secret":[1,{"a":null}],"x":1}}`, `{"spec":{"secret":[1,{"a":null}],"x":2}}`, `[{"op":"replace","path":"/spec/x","value":2}]`},
		{"ignored path inside an opaque value", []string{"/spec/secret"}, []string{"/spec/secret/ping"},
			`{"spec":{"secret":{"ping":1,"a":1}}}`, `{"spec":{"secret":{"ping":2,"a":1}}}`, `null`},
		{"opaque value changed with an ignored path inside", []string{"/spec/secret"}, []string{"/spec/secret/ping"},
			`{"spec":{"secret":{"ping":1,"a":1}}}`, `{"spec":{"secret":{"ping":2,"a":2}}}`, `[{"op":"replace","path":"/spec/secret","value":{"a":2}}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := jsonpatch.Options{Opaque: patterns(t, tc.opaque...)}
			if tc.ign != nil {
				o.Ignore = patterns(t, tc.ign...)
			}
			ops := checkIgnore(t, o, decode(t, tc.a), decode(t, tc.b))
			if got := js(t, ops); got != tc.want {
				t.Errorf("Diff = %s\nwant   %s", got, tc.want)
			}
		})
	}
}
