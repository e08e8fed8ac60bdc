package jsonpatch

import "strconv"

// The projection of a value at the current path is what is left once
// ignored paths are removed (Options.Ignore). These helpers read it without
// building it, and build it only for values that go into an op.

// present reports whether the projection of v, a map member at the current
// path (not ignored), exists: a non-empty map all of whose members are
// ignored, or empty maps once projected, is absent; an empty map is not.
func (w *walker) present(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || !w.hidden() {
		return true
	}
	for k, c := range m {
		w.push(k)
		ok := !w.ignored() && w.present(c)
		w.pop()
		if ok {
			return true
		}
	}
	return false
}

// equal compares the projections of a and b at the current path, both
// present there.
func (w *walker) equal(a, b any) bool {
	if !w.hidden() {
		return equal(a, b)
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return false
		}
		return w.equalMaps(av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			w.push(strconv.Itoa(i))
			eq := w.ignored() || w.equal(av[i], bv[i])
			w.pop()
			if !eq {
				return false
			}
		}
		return true
	}
	return equal(a, b)
}

func (w *walker) equalMaps(a, b map[string]any) bool {
	for k, x := range a {
		w.push(k)
		eq := w.ignored() || w.equalMember(x, true, b, k)
		w.pop()
		if !eq {
			return false
		}
	}
	for k, y := range b {
		if _, ok := a[k]; ok {
			continue
		}
		w.push(k)
		eq := w.ignored() || !w.present(y)
		w.pop()
		if !eq {
			return false
		}
	}
	return true
}

// equalMember compares member x of one map with the member of b at the
// last token (the current path, not ignored).
func (w *walker) equalMember(x any, inA bool, b map[string]any, k string) bool {
	y, inB := b[k]
	pa, pb := inA && w.present(x), inB && w.present(y)
	if !pa || !pb {
		return pa == pb
	}
	return w.equal(x, y)
}

// project returns the projection of v at the current path (not ignored),
// sharing every subtree that holds no ignored path. keepEmpty says what a
// map emptied by ignoring becomes: an empty map (root, array element, a
// value whose presence is settled) or nil.
func (w *walker) project(v any, keepEmpty bool) any {
	if !w.hidden() {
		return v
	}
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, c := range t {
			w.push(k)
			if !w.ignored() && w.present(c) {
				out[k] = w.project(c, false)
			}
			w.pop()
		}
		if len(out) == 0 && len(t) > 0 && !keepEmpty {
			return nil
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			w.push(strconv.Itoa(i))
			out[i] = w.element(c)
			w.pop()
		}
		return out
	}
	return v
}

// element returns the projection of an array element at the current path:
// null when the element is ignored, an empty map when ignoring empties it.
func (w *walker) element(v any) any {
	if w.ignored() {
		return nil
	}
	return w.project(v, true)
}

// Project returns the projection of v without the ignored paths (see
// Ignore), sharing every subtree that holds none; nil when v itself is
// ignored.
func (o Options) Project(v any) any {
	w := walker{ign: o.Ignore}
	w.toks = w.buf[:0]
	if w.ignored() {
		return nil
	}
	return w.project(v, true)
}
