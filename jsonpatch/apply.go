package jsonpatch

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// ErrPath is wrapped by the errors of Apply for a path that does not
// address what its op needs: a missing member or element, a parent that
// is not an object or array, a bad index or a malformed pointer.
var ErrPath = errors.New("bad path")

// Apply returns doc with the patch applied: the RFC 6902 operations add,
// remove and replace, on decoded JSON (map[string]any, []any and
// scalars). doc is never modified: the maps and arrays on the patched
// paths are copied, each once however many ops touch it, and everything
// else is shared with doc. Values the ops carry are put in place as they
// are (shared with ops, as Diff shares them with its new value), and
// copied before an op writes inside one. An empty patch returns doc itself.
//
// Paths are RFC 6901 pointers ("" is the whole document, ~1 is /, ~0 is
// ~); array indices are decimal without leading zeros, and "-" appends
// (add only). An op that needs a missing member or element, an index out
// of range, another op (move, copy, test) or a malformed pointer is an
// error (wrapping ErrPath for paths), and nothing is returned.
func Apply(doc any, ops []Op) (any, error) {
	a := applier{}
	for i, op := range ops {
		toks, err := ParsePointer(op.Path)
		if err == nil {
			doc, err = a.apply(doc, op, toks)
		}
		if err != nil {
			return nil, fmt.Errorf("patch op %d (%s %s): %w", i, op.Op, op.Path, err)
		}
	}
	return doc, nil
}

// applier copies on write: owned holds the maps and arrays it made, which
// later ops of the same patch write in place.
type applier struct {
	owned map[unsafe.Pointer]struct{}
}

func (a *applier) apply(doc any, op Op, toks []string) (any, error) {
	switch op.Op {
	case OpAdd, OpReplace, OpRemove:
	default:
		return nil, fmt.Errorf("unsupported op %q", op.Op)
	}
	if len(toks) == 0 {
		switch op.Op {
		case OpRemove:
			return nil, fmt.Errorf("%w: cannot remove the whole document", ErrPath)
		default:
			return op.Value, nil
		}
	}
	return a.at(doc, op, toks, 0)
}

// at applies op below v, the value at toks[:i], and returns v's
// replacement (v itself when owned).
func (a *applier) at(v any, op Op, toks []string, i int) (any, error) {
	last := i == len(toks)-1
	t := toks[i]
	switch c := v.(type) {
	case map[string]any:
		child, ok := c[t]
		if !ok && !(last && op.Op == OpAdd) {
			return nil, fmt.Errorf("%w: %s: no such member", ErrPath, pointer(toks[:i+1]))
		}
		if !last {
			nc, err := a.at(child, op, toks, i+1)
			if err != nil {
				return nil, err
			}
			if sameValue(nc, child) {
				return c, nil // written in place, in an owned child
			}
			c = a.ownMap(c)
			c[t] = nc
			return c, nil
		}
		c = a.ownMap(c)
		if op.Op == OpRemove {
			delete(c, t)
		} else {
			c[t] = op.Value
		}
		return c, nil
	case []any:
		if last && t == "-" && op.Op == OpAdd {
			return append(a.ownSlice(c), op.Value), nil
		}
		n := len(c)
		if last && op.Op == OpAdd {
			n++ // insert before any element, or at the end
		}
		idx, err := arrayIndex(t, n)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPath, pointer(toks[:i+1]), err)
		}
		if !last {
			nc, err := a.at(c[idx], op, toks, i+1)
			if err != nil {
				return nil, err
			}
			if sameValue(nc, c[idx]) {
				return c, nil
			}
			c = a.ownSlice(c)
			c[idx] = nc
			return c, nil
		}
		switch op.Op {
		case OpAdd:
			return a.mark(slices.Insert(a.ownSlice(c), idx, op.Value)), nil
		case OpRemove:
			c = a.ownSlice(c)
			c = slices.Delete(c, idx, idx+1)
			return c, nil
		default:
			c = a.ownSlice(c)
			c[idx] = op.Value
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: the parent is not an object or array", ErrPath, pointer(toks[:i+1]))
}

// ownMap returns m when the applier made it, else a copy it owns.
func (a *applier) ownMap(m map[string]any) map[string]any {
	p := reflect.ValueOf(m).UnsafePointer()
	if _, ok := a.owned[p]; ok {
		return m
	}
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if a.owned == nil {
		a.owned = map[unsafe.Pointer]struct{}{}
	}
	a.owned[reflect.ValueOf(out).UnsafePointer()] = struct{}{}
	return out
}

// ownSlice returns s when the applier made its array, else a copy it
// owns, with room for one more element.
func (a *applier) ownSlice(s []any) []any {
	if len(s) > 0 {
		if _, ok := a.owned[unsafe.Pointer(unsafe.SliceData(s))]; ok {
			return s
		}
	}
	return a.mark(append(make([]any, 0, len(s)+1), s...))
}

// mark records s's array as owned (an append may have moved it).
func (a *applier) mark(s []any) []any {
	if cap(s) > 0 {
		if a.owned == nil {
			a.owned = map[unsafe.Pointer]struct{}{}
		}
		a.owned[unsafe.Pointer(unsafe.SliceData(s))] = struct{}{}
	}
	return s
}

// sameValue reports whether a child written below came back as the same
// container (written in place because the applier owns it).
func sameValue(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		return ok && reflect.ValueOf(av).UnsafePointer() == reflect.ValueOf(bv).UnsafePointer()
	case []any:
		bv, ok := b.([]any)
		return ok && len(av) == len(bv) && unsafe.SliceData(av) == unsafe.SliceData(bv)
	}
	return false
}

// arrayIndex reads an array index token for an array of n slots.
func arrayIndex(t string, n int) (int, error) {
	if t == "" || (len(t) > 1 && t[0] == '0') || strings.TrimLeft(t, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not an array index", t)
	}
	i, err := strconv.Atoi(t)
	if err != nil || i >= n {
		return 0, fmt.Errorf("index %s out of range", t)
	}
	return i, nil
}

// ParsePointer splits an RFC 6901 JSON pointer into unescaped tokens.
func ParsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("%w: %q does not start with /", ErrPath, p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		if !strings.Contains(t, "~") {
			continue
		}
		var sb strings.Builder
		for j := 0; j < len(t); j++ {
			if t[j] != '~' {
				sb.WriteByte(t[j])
				continue
			}
			if j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1') {
				return nil, fmt.Errorf("%w: %q: ~ must be followed by 0 or 1", ErrPath, p)
			}
			if t[j+1] == '0' {
				sb.WriteByte('~')
			} else {
				sb.WriteByte('/')
			}
			j++
		}
		toks[i] = sb.String()
	}
	return toks, nil
}
