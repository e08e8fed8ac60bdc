package plan

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Attribution (rule option attribution: managers): who made a change,
// read from the managedFields of the two versions. The API server keeps,
// per field manager, operation and subresource, the time of its last
// write and the fields it owns (fieldsV1). A modification names the
// managers whose entry is new or whose time moved, narrowed to those that
// own a path of the patch when the field sets allow; an addition names
// the manager that created the object; a deletion names nobody (nothing
// records who deleted).
//
// The cache keeps managedFields only for scopes whose rules ask
// (CompactManagedFields), and data.object never shows them
// (WithoutManagedFields).

// managedEntry is one managedFields entry as the cache keeps it.
type managedEntry struct {
	event.FieldManager
	fields map[string]any // fieldsV1; nil when unknown
}

func (m managedEntry) key() string {
	return m.Manager + "\x00" + m.Operation + "\x00" + m.Subresource
}

// CompactManagedFields shrinks obj's metadata.managedFields in place to
// what attribution reads: manager, operation, subresource, time and
// fieldsV1 (apiVersion and fieldsType go). It runs in the informer's
// transform, before the object is shared.
func CompactManagedFields(obj map[string]any) {
	md, _ := obj["metadata"].(map[string]any)
	list, _ := md["managedFields"].([]any)
	if list == nil {
		return
	}
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			delete(m, "apiVersion")
			delete(m, "fieldsType")
		}
	}
}

// WithoutManagedFields returns obj without metadata.managedFields: obj
// itself when it has none, otherwise a shallow copy (obj is shared with
// the cache and never modified).
func WithoutManagedFields(obj map[string]any) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	if _, ok := md["managedFields"]; !ok {
		return obj
	}
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	nmd := make(map[string]any, len(md))
	for k, v := range md {
		if k != "managedFields" {
			nmd[k] = v
		}
	}
	out["metadata"] = nmd
	return out
}

// managedEntries reads obj's managedFields; ok is false when it has none
// (not kept, or written before attribution was on).
func managedEntries(obj map[string]any) (out []managedEntry, ok bool) {
	md, _ := obj["metadata"].(map[string]any)
	list, ok := md["managedFields"].([]any)
	if !ok {
		return nil, false
	}
	for _, e := range list {
		m, _ := e.(map[string]any)
		if m == nil {
			continue
		}
		str := func(k string) string { s, _ := m[k].(string); return s }
		me := managedEntry{FieldManager: event.FieldManager{Manager: str("manager"), Operation: str("operation"), Subresource: str("subresource"), Time: str("time")}}
		if me.Manager == "" {
			continue
		}
		me.fields, _ = m["fieldsV1"].(map[string]any)
		out = append(out, me)
	}
	return out, true
}

// ChangedBy names who made a change of kind from prev (modified only; nil
// when unknown) to cur, whose visible patch is ops. Nil when the
// managedFields say nothing.
func ChangedBy(kind event.Change, prev, cur map[string]any, ops []jsonpatch.Op) []event.FieldManager {
	entries, ok := managedEntries(cur)
	if !ok || len(entries) == 0 {
		return nil
	}
	switch kind {
	case event.Added:
		first := entries[0]
		for _, e := range entries[1:] {
			if e.Time != "" && (first.Time == "" || e.Time < first.Time) {
				first = e
			}
		}
		return []event.FieldManager{first.FieldManager}
	case event.Modified:
	default:
		return nil
	}
	before := map[string]managedEntry{}
	old, known := managedEntries(prev)
	for _, e := range old {
		before[e.key()] = e
	}
	// moved: new entries, and those whose time moved. An entry without a
	// time (the API server records none for writes through the scale
	// subresource) may have moved too: it is a candidate, named only when
	// it owns a changed path.
	var moved, candidates []managedEntry
	if known {
		for _, e := range entries {
			b, ok := before[e.key()]
			switch {
			case !ok || b.Time != e.Time:
				moved = append(moved, e)
				candidates = append(candidates, e)
			case e.Time == "":
				candidates = append(candidates, e)
			}
		}
	}
	if len(candidates) == 0 {
		// No entry moved (the previous version kept no managedFields, or
		// two writes in one second): whoever owns a changed path.
		candidates = entries
	}
	// Narrowed to the owners of a changed path; a moved entry without a
	// field set cannot be narrowed and stays.
	var owners []event.FieldManager
	for _, e := range candidates {
		switch {
		case e.fields == nil:
			if isIn(moved, e) {
				owners = append(owners, e.FieldManager)
			}
		case ownsAny(e, before[e.key()], prev, cur, ops):
			owners = append(owners, e.FieldManager)
		}
	}
	if len(owners) > 0 {
		return owners
	}
	if len(moved) == 0 {
		return nil
	}
	out := make([]event.FieldManager, len(moved))
	for i, e := range moved {
		out[i] = e.FieldManager
	}
	return out
}

func isIn(es []managedEntry, e managedEntry) bool {
	for _, x := range es {
		if x.key() == e.key() {
			return true
		}
	}
	return false
}

// ownsAny reports whether e (or its previous entry, for what it owned
// before a removal) owns the path of one of ops.
func ownsAny(e, before managedEntry, prev, cur map[string]any, ops []jsonpatch.Op) bool {
	for _, op := range ops {
		toks := pointerTokens(op.Path)
		if owns(e.fields, toks, cur) || (before.fields != nil && prev != nil && owns(before.fields, toks, prev)) {
			return true
		}
	}
	return false
}

// pointerTokens splits an RFC 6901 JSON pointer into unescaped tokens.
func pointerTokens(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		if strings.Contains(t, "~") {
			toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
		}
	}
	return toks
}

// owns walks a fieldsV1 set along toks through obj (which resolves list
// indexes to the keys fieldsV1 names elements by): true when the set
// reaches the path, or owns a field on the way whole.
func owns(set map[string]any, toks []string, obj any) bool {
	node, val := set, obj
	for _, t := range toks {
		if _, whole := node["."]; whole {
			return true
		}
		var child any
		switch v := val.(type) {
		case map[string]any:
			child = node["f:"+t]
			val = v[t]
		case []any:
			i, err := strconv.Atoi(t)
			if t == "-" {
				i, err = len(v)-1, nil
			}
			if err != nil || i < 0 || i >= len(v) {
				return false
			}
			child = elementSet(node, i, v[i])
			val = v[i]
		default:
			return false
		}
		next, ok := child.(map[string]any)
		if !ok {
			return false
		}
		if len(next) == 0 {
			return true // a leaf: the field is owned whole
		}
		node = next
	}
	return true
}

// elementSet finds the field set of list element i (value v) in node:
// by index (i:N), by key fields (k:{...}) or by value (v:...).
func elementSet(node map[string]any, i int, v any) any {
	if c, ok := node["i:"+strconv.Itoa(i)]; ok {
		return c
	}
	for k, c := range node {
		switch {
		case strings.HasPrefix(k, "k:"):
			var keys map[string]any
			dec := json.NewDecoder(strings.NewReader(k[2:]))
			dec.UseNumber()
			if dec.Decode(&keys) != nil {
				continue
			}
			m, _ := v.(map[string]any)
			match := m != nil
			for f, want := range keys {
				if !sameScalar(m[f], want) {
					match = false
					break
				}
			}
			if match {
				return c
			}
		case strings.HasPrefix(k, "v:"):
			var want any
			dec := json.NewDecoder(strings.NewReader(k[2:]))
			dec.UseNumber()
			if dec.Decode(&want) == nil && sameScalar(v, want) {
				return c
			}
		}
	}
	return nil
}

// sameScalar compares a cached JSON scalar with one decoded with
// UseNumber.
func sameScalar(have, want any) bool {
	switch w := want.(type) {
	case json.Number:
		switch h := have.(type) {
		case json.Number:
			return h == w
		case int64, int, float64:
			return fmt.Sprint(h) == w.String() || numberValue(h) == numberValue(w)
		}
		return false
	case string, bool, nil:
		return have == want
	}
	return false
}

func numberValue(v any) float64 {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case float64:
		return n
	case json.Number:
		f, _ := n.Float64()
		return f
	}
	return 0
}
