package diff

import (
	"sort"
	"strconv"
	"strings"
)

// Op is one RFC 6902 operation. Only add, remove and replace are produced.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Operations.
const (
	OpAdd     = "add"
	OpRemove  = "remove"
	OpReplace = "replace"
)

// Diff returns the patch that turns old into new.
func Diff(old, new any) []Op {
	var ops []Op
	return diff(ops, "", old, new)
}

func diff(ops []Op, path string, a, b any) []Op {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return append(ops, Op{Op: OpReplace, Path: path, Value: b})
		}
		return diffMaps(ops, path, av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok {
			return append(ops, Op{Op: OpReplace, Path: path, Value: b})
		}
		return diffSlices(ops, path, av, bv)
	default:
		if !Equal(a, b) {
			return append(ops, Op{Op: OpReplace, Path: path, Value: b})
		}
		return ops
	}
}

func diffMaps(ops []Op, path string, a, b map[string]any) []Op {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		av, inA := a[k]
		bv, inB := b[k]
		p := path + "/" + EscapeToken(k)
		switch {
		case inA && !inB:
			ops = append(ops, Op{Op: OpRemove, Path: p})
		case !inA && inB:
			ops = append(ops, Op{Op: OpAdd, Path: p, Value: bv})
		default:
			ops = diff(ops, p, av, bv)
		}
	}
	return ops
}

func diffSlices(ops []Op, path string, a, b []any) []Op {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ops = diff(ops, path+"/"+strconv.Itoa(i), a[i], b[i])
	}
	for i := n; i < len(b); i++ {
		ops = append(ops, Op{Op: OpAdd, Path: path + "/" + strconv.Itoa(i), Value: b[i]})
	}
	for i := len(a) - 1; i >= n; i-- {
		ops = append(ops, Op{Op: OpRemove, Path: path + "/" + strconv.Itoa(i)})
	}
	return ops
}

// Equal reports whether two decoded JSON values are equal. Numbers compare by
// value whether decoded as int64 or float64.
func Equal(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !Equal(x, y) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !Equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case nil:
		return b == nil
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	}
	return 0, false
}

// EscapeToken escapes one JSON pointer reference token (RFC 6901).
func EscapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// ChangedPaths lists the paths the patch touches, in patch order, each once.
func ChangedPaths(ops []Op) []string {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.Path)
	}
	return out
}
