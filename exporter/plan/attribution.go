package plan

import (
	"encoding/json"
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
// The cache keeps managedFields only for scopes whose rules ask, and as
// one form, their JSON text (ManagedFieldsText; a watch event's arrive so,
// wirejson's ManagedFieldsRaw), read in place; data.object never shows
// them (WithoutManagedFields).

// managedEntry is one managedFields entry as the cache keeps it.
type managedEntry struct {
	event.FieldManager
	fields fieldNode // fieldsV1; zero when the entry has none
}

// fieldNode is a fieldsV1 set or a set inside one, as its JSON text.
type fieldNode struct {
	raw   string
	valid bool
}

func (n fieldNode) ok() bool { return n.valid }

// get is the set under key.
func (n fieldNode) get(key string) (fieldNode, bool) {
	it := members{raw: n.raw}
	for it.next() {
		if it.key == key {
			return fieldNode{raw: it.val, valid: true}, true
		}
	}
	return fieldNode{}, false
}

// empty reports a set with no members: a field owned as a leaf.
func (n fieldNode) empty() bool {
	it := members{raw: n.raw}
	return !it.next()
}

type entryKey struct{ manager, operation, subresource string }

func (m managedEntry) key() entryKey {
	return entryKey{m.Manager, m.Operation, m.Subresource}
}

// ManagedFieldsText turns obj's decoded metadata.managedFields (a list
// page's) into the one form the cache keeps: their JSON text, without
// each entry's apiVersion and fieldsType. It runs in the informer's
// transform, before the object is shared; text (a watch event's) is left
// as it is.
func ManagedFieldsText(obj map[string]any) {
	md, _ := obj["metadata"].(map[string]any)
	list, ok := md["managedFields"].([]any)
	if !ok {
		return
	}
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			delete(m, "apiVersion")
			delete(m, "fieldsType")
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		delete(md, "managedFields") // not JSON: nothing to attribute with
		return
	}
	md["managedFields"] = string(b)
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
	text, ok := md["managedFields"].(string)
	if !ok {
		return nil, false
	}
	out = make([]managedEntry, 0, 4)
	it := elements{raw: text}
	for it.next() {
		var me managedEntry
		m := members{raw: it.val}
		for m.next() {
			switch m.key {
			case "manager":
				me.Manager = stringValue(m.val)
			case "operation":
				me.Operation = stringValue(m.val)
			case "subresource":
				me.Subresource = stringValue(m.val)
			case "time":
				me.Time = stringValue(m.val)
			case "fieldsV1":
				me.fields = fieldNode{raw: m.val, valid: strings.HasPrefix(m.val, "{")}
			}
		}
		if me.Manager != "" {
			out = append(out, me)
		}
	}
	return out, true
}

// stringValue is the JSON string whose text is q; "" when q is not one.
func stringValue(q string) string {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return ""
	}
	if strings.IndexByte(q, '\\') < 0 {
		return q[1 : len(q)-1]
	}
	s, _ := unquote(q)
	return s
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
	before := map[entryKey]managedEntry{}
	old, known := managedEntries(prev)
	for _, e := range old {
		before[e.key()] = e
	}
	// moved: new entries, and those whose time moved. An entry without a
	// time (the API server records none for writes through the scale
	// subresource) may have moved too: it is a candidate, named only when
	// it owns a changed path.
	moved := make([]managedEntry, 0, len(entries))
	candidates := make([]managedEntry, 0, len(entries))
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
	paths := make([][]string, 0, len(ops))
	for _, op := range ops {
		if toks, err := jsonpatch.ParsePointer(op.Path); err == nil {
			paths = append(paths, toks)
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
	for i := range candidates {
		e := &candidates[i]
		switch {
		case !e.fields.ok():
			if isIn(moved, *e) {
				owners = append(owners, e.FieldManager)
			}
		case ownsAny(e, before[e.key()], prev, cur, paths):
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
// before a removal) owns one of paths (the patch's, as tokens).
func ownsAny(e *managedEntry, before managedEntry, prev, cur map[string]any, paths [][]string) bool {
	for _, toks := range paths {
		if owns(e.fields, toks, cur) || (prev != nil && before.fields.ok() && owns(before.fields, toks, prev)) {
			return true
		}
	}
	return false
}

// owns walks a fieldsV1 set along toks through obj (which resolves list
// indexes to the keys fieldsV1 names elements by): true when the set
// reaches the path, or owns a field on the way whole.
func owns(set fieldNode, toks []string, obj any) bool {
	if !set.ok() {
		return false
	}
	node, val := set, obj
	for _, t := range toks {
		if _, whole := node.get("."); whole {
			return true
		}
		var child fieldNode
		var found bool
		switch v := val.(type) {
		case map[string]any:
			child, found = node.get("f:" + t)
			val = v[t]
		case []any:
			i, err := strconv.Atoi(t)
			if t == "-" {
				i, err = len(v)-1, nil
			}
			if err != nil || i < 0 || i >= len(v) {
				return false
			}
			child, found = elementSet(node, i, v[i])
			val = v[i]
		default:
			return false
		}
		if !found {
			return false
		}
		if child.empty() {
			return true // a leaf: the field is owned whole
		}
		node = child
	}
	return true
}

// elementSet finds the field set of list element i (value v) in node:
// by index (i:N), by key fields (k:{...}) or by value (v:...), compared as
// JSON values (numbers exactly).
func elementSet(node fieldNode, i int, v any) (fieldNode, bool) {
	if c, ok := node.get("i:" + strconv.Itoa(i)); ok {
		return c, true
	}
	decode := func(s string) (any, bool) {
		var x any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		return x, dec.Decode(&x) == nil
	}
	it := members{raw: node.raw}
	for it.next() {
		switch {
		case strings.HasPrefix(it.key, "k:"):
			keys, ok := decode(it.key[2:])
			km, _ := keys.(map[string]any)
			m, _ := v.(map[string]any)
			if !ok || km == nil || m == nil {
				continue
			}
			match := true
			for f, want := range km {
				if !jsonpatch.Equal(m[f], want) {
					match = false
					break
				}
			}
			if match {
				return fieldNode{raw: it.val, valid: true}, true
			}
		case strings.HasPrefix(it.key, "v:"):
			if want, ok := decode(it.key[2:]); ok && jsonpatch.Equal(v, want) {
				return fieldNode{raw: it.val, valid: true}, true
			}
		}
	}
	return fieldNode{}, false
}

// elements walks the elements of the JSON array raw: next moves to the
// next one and sets its text; text that is not an array ends the walk.
type elements struct {
	raw string
	i   int
	val string
}

func (e *elements) next() bool {
	raw, i := e.raw, e.i
	if i == 0 {
		i = skipSpace(raw, 0)
		if i >= len(raw) || raw[i] != '[' {
			return false
		}
		i++
	}
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == ']' {
			e.i = len(raw)
			return false
		}
		if raw[i] != ',' {
			break
		}
		i++
	}
	end := valueEnd(raw, i)
	if end < 0 {
		e.i = len(raw)
		return false
	}
	e.val, e.i = raw[i:end], end
	return true
}

// members walks the members of the JSON object raw: next moves to the
// next one, whose key (unescaped) and value's text it sets; text that is
// not an object ends the walk early.
type members struct {
	raw      string
	i        int
	key, val string
}

func (m *members) next() bool {
	raw, i := m.raw, m.i
	if i == 0 {
		i = skipSpace(raw, 0)
		if i >= len(raw) || raw[i] != '{' {
			return false
		}
		i++
	}
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == '}' {
			m.i = len(raw)
			return false
		}
		if raw[i] != ',' {
			break
		}
		i++
	}
	if raw[i] != '"' {
		m.i = len(raw)
		return false
	}
	end, escaped := stringEnd(raw, i)
	if end < 0 {
		m.i = len(raw)
		return false
	}
	key := raw[i+1 : end-1]
	if escaped {
		var ok bool
		if key, ok = unquote(raw[i:end]); !ok {
			m.i = len(raw)
			return false
		}
	}
	i = skipSpace(raw, end)
	if i >= len(raw) || raw[i] != ':' {
		m.i = len(raw)
		return false
	}
	i = skipSpace(raw, i+1)
	vend := valueEnd(raw, i)
	if vend < 0 {
		m.i = len(raw)
		return false
	}
	m.key, m.val, m.i = key, raw[i:vend], vend
	return true
}

// unquote decodes a JSON string with escapes (a k: key's quotes).
func unquote(q string) (string, bool) {
	var s string
	return s, json.Unmarshal([]byte(q), &s) == nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the JSON string starting at s[i] ('"'),
// and whether it holds escapes; -1 when it does not end. It jumps from
// quote to quote (most of a field set's text is inside strings).
func stringEnd(s string, i int) (int, bool) {
	j := i + 1
	for {
		k := strings.IndexByte(s[j:], '"')
		if k < 0 {
			return -1, false
		}
		q := j + k
		n := 0 // backslashes right before the quote
		for b := q - 1; b > i && s[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, strings.IndexByte(s[i+1:q], '\\') >= 0
		}
		j = q + 1
	}
}

// valueEnd is the index after the JSON value starting at s[i]: a string,
// an object or array (found by its brackets, strings skipped) or a
// scalar; -1 when it does not end.
func valueEnd(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		end, _ := stringEnd(s, i)
		return end
	case '{', '[':
	default:
		j := i
		for j < len(s) && !strings.ContainsRune(",}] \t\r\n", rune(s[j])) {
			j++
		}
		return j
	}
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"':
			end, _ := stringEnd(s, j)
			if end < 0 {
				return -1
			}
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return -1
}
