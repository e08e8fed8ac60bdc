package consumer

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// applyPatch applies an RFC 6902 patch to doc (decoded JSON) and returns
// the result; doc is not modified (containers on the patched paths are
// copied). A missing "value" counts as null, since some producers omit null
// values.
func applyPatch(doc any, ops []patchOp) (any, error) {
	for i, op := range ops {
		var err error
		if doc, err = applyOp(doc, op); err != nil {
			return nil, fmt.Errorf("patch op %d (%s %s): %w", i, op.Op, op.Path, err)
		}
	}
	return doc, nil
}

func applyOp(doc any, op patchOp) (any, error) {
	value := func() (any, error) {
		if len(op.Value) == 0 {
			return nil, nil
		}
		var v any
		if err := decodeJSON(op.Value, &v); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
		return v, nil
	}
	path, err := parsePointer(op.Path)
	if err != nil {
		return nil, err
	}
	switch op.Op {
	case "add", "replace":
		v, err := value()
		if err != nil {
			return nil, err
		}
		return set(doc, path, v, op.Op == "add")
	case "remove":
		out, _, err := remove(doc, path)
		return out, err
	case "test":
		v, err := value()
		if err != nil {
			return nil, err
		}
		got, err := get(doc, path)
		if err != nil {
			return nil, err
		}
		if !reflect.DeepEqual(got, v) {
			return nil, fmt.Errorf("test failed")
		}
		return doc, nil
	case "move", "copy":
		from, err := parsePointer(op.From)
		if err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		v, err := get(doc, from)
		if err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		if op.Op == "move" {
			if doc, _, err = remove(doc, from); err != nil {
				return nil, err
			}
		} else {
			v = deepCopy(v)
		}
		return set(doc, path, v, true)
	}
	return nil, fmt.Errorf("unknown op %q", op.Op)
}

// parsePointer splits an RFC 6901 JSON pointer into unescaped tokens.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("path %q does not start with /", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		if strings.Contains(t, "~") {
			t = strings.ReplaceAll(t, "~1", "/")
			t = strings.ReplaceAll(t, "~0", "~")
			toks[i] = t
		}
	}
	return toks, nil
}

func get(doc any, path []string) (any, error) {
	cur := doc
	for i, t := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[t]
			if !ok {
				return nil, fmt.Errorf("%s: no such key", pointer(path[:i+1]))
			}
			cur = v
		case []any:
			idx, err := index(t, len(c), false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", pointer(path[:i+1]), err)
			}
			cur = c[idx]
		default:
			return nil, fmt.Errorf("%s: parent is not an object or array", pointer(path[:i+1]))
		}
	}
	return cur, nil
}

// set adds (insert) or replaces the value at path, copying the containers
// along the way.
func set(doc any, path []string, v any, insert bool) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	t, rest := path[0], path[1:]
	switch c := doc.(type) {
	case map[string]any:
		child, ok := c[t]
		out := copyMap(c)
		if len(rest) == 0 {
			if !ok && !insert {
				return nil, fmt.Errorf("/%s: no such key to replace", escapeToken(t))
			}
			out[t] = v
			return out, nil
		}
		if !ok {
			return nil, fmt.Errorf("/%s: no such key", escapeToken(t))
		}
		nv, err := set(child, rest, v, insert)
		if err != nil {
			return nil, prefixErr(t, err)
		}
		out[t] = nv
		return out, nil
	case []any:
		if len(rest) == 0 && insert {
			idx, err := index(t, len(c), true)
			if err != nil {
				return nil, fmt.Errorf("/%s: %w", t, err)
			}
			out := make([]any, 0, len(c)+1)
			out = append(append(append(out, c[:idx]...), v), c[idx:]...)
			return out, nil
		}
		idx, err := index(t, len(c), false)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", t, err)
		}
		out := append([]any(nil), c...)
		if len(rest) == 0 {
			out[idx] = v
			return out, nil
		}
		nv, err := set(c[idx], rest, v, insert)
		if err != nil {
			return nil, prefixErr(t, err)
		}
		out[idx] = nv
		return out, nil
	}
	return nil, fmt.Errorf("/%s: parent is not an object or array", escapeToken(t))
}

// remove deletes the value at path and returns the new document and the
// removed value.
func remove(doc any, path []string) (any, any, error) {
	if len(path) == 0 {
		return nil, nil, fmt.Errorf("cannot remove the whole document")
	}
	t, rest := path[0], path[1:]
	switch c := doc.(type) {
	case map[string]any:
		child, ok := c[t]
		if !ok {
			return nil, nil, fmt.Errorf("/%s: no such key", escapeToken(t))
		}
		out := copyMap(c)
		if len(rest) == 0 {
			delete(out, t)
			return out, child, nil
		}
		nv, old, err := remove(child, rest)
		if err != nil {
			return nil, nil, prefixErr(t, err)
		}
		out[t] = nv
		return out, old, nil
	case []any:
		idx, err := index(t, len(c), false)
		if err != nil {
			return nil, nil, fmt.Errorf("/%s: %w", t, err)
		}
		if len(rest) == 0 {
			out := make([]any, 0, len(c)-1)
			out = append(append(out, c[:idx]...), c[idx+1:]...)
			return out, c[idx], nil
		}
		nv, old, err := remove(c[idx], rest)
		if err != nil {
			return nil, nil, prefixErr(t, err)
		}
		out := append([]any(nil), c...)
		out[idx] = nv
		return out, old, nil
	}
	return nil, nil, fmt.Errorf("/%s: parent is not an object or array", escapeToken(t))
}

// index parses an array index; "-" (one past the end) only when inserting.
func index(t string, n int, insert bool) (int, error) {
	if insert && t == "-" {
		return n, nil
	}
	if t == "" || (len(t) > 1 && t[0] == '0') {
		return 0, fmt.Errorf("bad array index %q", t)
	}
	i, err := strconv.Atoi(t)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("bad array index %q", t)
	}
	limit := n - 1
	if insert {
		limit = n
	}
	if i > limit {
		return 0, fmt.Errorf("array index %d out of range (length %d)", i, n)
	}
	return i, nil
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func deepCopy(v any) any {
	switch c := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(c))
		for k, x := range c {
			out[k] = deepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(c))
		for i, x := range c {
			out[i] = deepCopy(x)
		}
		return out
	}
	return v
}

func escapeToken(t string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(t)
}

func pointer(toks []string) string {
	var b strings.Builder
	for _, t := range toks {
		b.WriteString("/" + escapeToken(t))
	}
	return b.String()
}

type pathError struct {
	prefix string
	err    error
}

func (e *pathError) Error() string { return e.prefix + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// prefixErr puts the parent token in front of an error's path.
func prefixErr(t string, err error) error {
	return &pathError{prefix: "/" + escapeToken(t), err: err}
}
