package jsonpatch

import (
	"slices"
	"strconv"
)

// Diff returns the patch that turns old into new.
func Diff(old, new any) []Op { return Options{}.Diff(old, new) }

// Diff returns the patch that turns the projection of old (see Ignore) into
// the projection of new.
func (o Options) Diff(old, new any) []Op {
	w := walker{ign: o.Ignore, opq: o.Opaque}
	w.toks = w.buf[:0]
	if w.ignored() {
		return nil
	}
	w.node(old, new)
	return w.ops
}

// walker carries the path being diffed, as a stack of unescaped tokens; the
// pointer string is only built for an op. Subtrees where no pattern applies
// are diffed by plain, which never consults the matchers.
type walker struct {
	ign, opq Matcher
	toks     []string
	buf      [16]string
	keys     []string // scratch stack of sorted map keys
	ops      []Op
}

func (w *walker) push(t string) { w.toks = append(w.toks, t) }
func (w *walker) pop()          { w.toks = w.toks[:len(w.toks)-1] }

func (w *walker) emit(op string, v any) {
	w.ops = append(w.ops, Op{Op: op, Path: pointer(w.toks), Value: v})
}

func (w *walker) ignored() bool { return w.ign != nil && w.ign.MatchTokens(w.toks) }

// hidden reports whether ignored paths lie below the current one.
func (w *walker) hidden() bool { return w.ign != nil && w.ign.BelowTokens(w.toks) }

// watched reports whether a pattern applies at or below the current path
// (which is not ignored).
func (w *walker) watched() bool {
	return w.hidden() || (w.opq != nil && (w.opq.MatchTokens(w.toks) || w.opq.BelowTokens(w.toks)))
}

// node diffs two values present at the current path, which is not ignored.
func (w *walker) node(a, b any) {
	if !w.watched() {
		w.plain(a, b)
		return
	}
	if w.opq != nil && w.opq.MatchTokens(w.toks) {
		if !w.equal(a, b) {
			w.emit(OpReplace, w.project(b, true))
		}
		return
	}
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			w.maps(av, bv, true)
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			w.slices(av, bv, true)
			return
		}
	}
	if !w.equal(a, b) {
		w.emit(OpReplace, w.project(b, true))
	}
}

// plain diffs a subtree no pattern applies to.
func (w *walker) plain(a, b any) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			w.maps(av, bv, false)
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			w.slices(av, bv, false)
			return
		}
	}
	if !equal(a, b) {
		w.emit(OpReplace, b)
	}
}

// maps diffs two maps member by member, in key order.
func (w *walker) maps(a, b map[string]any, watched bool) {
	base := len(w.keys)
	for k := range a {
		w.keys = append(w.keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			w.keys = append(w.keys, k)
		}
	}
	keys := w.keys[base:]
	slices.Sort(keys)
	for _, k := range keys {
		av, inA := a[k]
		bv, inB := b[k]
		w.push(k)
		if watched {
			w.member(av, inA, bv, inB)
		} else {
			switch {
			case inA && !inB:
				w.emit(OpRemove, nil)
			case !inA && inB:
				w.emit(OpAdd, bv)
			default:
				w.plain(av, bv)
			}
		}
		w.pop()
	}
	clear(keys)
	w.keys = w.keys[:base]
}

// member diffs one map member under a watched path: a member whose
// projection is absent (ignored, or a map emptied by ignoring) counts as
// missing.
func (w *walker) member(av any, inA bool, bv any, inB bool) {
	if w.ignored() {
		return
	}
	inA = inA && w.present(av)
	inB = inB && w.present(bv)
	switch {
	case inA && !inB:
		w.emit(OpRemove, nil)
	case !inA && inB:
		w.emit(OpAdd, w.project(bv, false))
	case inA && inB:
		w.node(av, bv)
	}
}

// slices diffs arrays element by element, then grows them with add or
// shrinks them with remove from the end.
func (w *walker) slices(a, b []any, watched bool) {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		w.push(strconv.Itoa(i))
		switch {
		case !watched:
			w.plain(a[i], b[i])
		case !w.ignored():
			w.node(a[i], b[i])
		}
		w.pop()
	}
	for i := n; i < len(b); i++ {
		w.push(strconv.Itoa(i))
		v := b[i]
		if watched {
			v = w.element(v)
		}
		w.emit(OpAdd, v)
		w.pop()
	}
	for i := len(a) - 1; i >= n; i-- {
		w.push(strconv.Itoa(i))
		w.emit(OpRemove, nil)
		w.pop()
	}
}
