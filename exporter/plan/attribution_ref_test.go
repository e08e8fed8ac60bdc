package plan

// The attribution code as it was before it was made faster (commit
// 7703ed3), kept to check that the faster one answers the same.

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// refManagedEntry is one managedFields entry as the cache keeps it.
type refManagedEntry struct {
	event.FieldManager
	fields refFieldNode // fieldsV1; zero when the entry has none
}

// refFieldNode is a fieldsV1 set or a set inside one, as its JSON text.
type refFieldNode struct {
	raw   string
	valid bool
}

func (n refFieldNode) ok() bool { return n.valid }

// get is the set under key.
func (n refFieldNode) get(key string) (refFieldNode, bool) {
	it := refMembers{raw: n.raw}
	for it.next() {
		if it.key == key {
			return refFieldNode{raw: it.val, valid: true}, true
		}
	}
	return refFieldNode{}, false
}

// empty reports a set with no refMembers: a field owned as a leaf.
func (n refFieldNode) empty() bool {
	it := refMembers{raw: n.raw}
	return !it.next()
}

type refEntryKey struct{ manager, operation, subresource string }

func (m refManagedEntry) key() refEntryKey {
	return refEntryKey{m.Manager, m.Operation, m.Subresource}
}

// refManagedEntries reads obj's managedFields; ok is false when it has none
// (not kept, or written before attribution was on).
func refManagedEntries(obj map[string]any) (out []refManagedEntry, ok bool) {
	md, _ := obj["metadata"].(map[string]any)
	text, ok := md["managedFields"].(string)
	if !ok {
		return nil, false
	}
	out = make([]refManagedEntry, 0, 4)
	it := refElements{raw: text}
	for it.next() {
		var me refManagedEntry
		m := refMembers{raw: it.val}
		for m.next() {
			switch m.key {
			case "manager":
				me.Manager = refStringValue(m.val)
			case "operation":
				me.Operation = refStringValue(m.val)
			case "subresource":
				me.Subresource = refStringValue(m.val)
			case "time":
				me.Time = refStringValue(m.val)
			case "fieldsV1":
				me.fields = refFieldNode{raw: m.val, valid: strings.HasPrefix(m.val, "{")}
			}
		}
		if me.Manager != "" {
			out = append(out, me)
		}
	}
	return out, true
}

// refStringValue is the JSON string whose text is q; "" when q is not one.
func refStringValue(q string) string {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return ""
	}
	if strings.IndexByte(q, '\\') < 0 {
		return q[1 : len(q)-1]
	}
	s, _ := refUnquote(q)
	return s
}

// refChangedBy names who made a change of kind from prev (modified only; nil
// when unknown) to cur, whose visible patch is ops. Nil when the
// managedFields say nothing.
func refChangedBy(kind event.Change, prev, cur map[string]any, ops []jsonpatch.Op) []event.FieldManager {
	entries, ok := refManagedEntries(cur)
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
	before := map[refEntryKey]refManagedEntry{}
	old, known := refManagedEntries(prev)
	for _, e := range old {
		before[e.key()] = e
	}
	// moved: new entries, and those whose time moved. An entry without a
	// time (the API server records none for writes through the scale
	// subresource) may have moved too: it is a candidate, named only when
	// it refOwns a changed path.
	moved := make([]refManagedEntry, 0, len(entries))
	candidates := make([]refManagedEntry, 0, len(entries))
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
		// two writes in one second): whoever refOwns a changed path.
		candidates = entries
	}
	// Narrowed to the owners of a changed path; a moved entry without a
	// field set cannot be narrowed and stays.
	var owners []event.FieldManager
	for i := range candidates {
		e := &candidates[i]
		switch {
		case !e.fields.ok():
			if refIsIn(moved, *e) {
				owners = append(owners, e.FieldManager)
			}
		case refOwnsAny(e, before[e.key()], prev, cur, paths):
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

func refIsIn(es []refManagedEntry, e refManagedEntry) bool {
	for _, x := range es {
		if x.key() == e.key() {
			return true
		}
	}
	return false
}

// refOwnsAny reports whether e (or its previous entry, for what it owned
// before a removal) refOwns one of paths (the patch's, as tokens).
func refOwnsAny(e *refManagedEntry, before refManagedEntry, prev, cur map[string]any, paths [][]string) bool {
	for _, toks := range paths {
		if refOwns(e.fields, toks, cur) || (prev != nil && before.fields.ok() && refOwns(before.fields, toks, prev)) {
			return true
		}
	}
	return false
}

// refOwns walks a fieldsV1 set along toks through obj (which resolves list
// indexes to the keys fieldsV1 names refElements by): true when the set
// reaches the path, or refOwns a field on the way whole.
func refOwns(set refFieldNode, toks []string, obj any) bool {
	if !set.ok() {
		return false
	}
	node, val := set, obj
	for _, t := range toks {
		if _, whole := node.get("."); whole {
			return true
		}
		var child refFieldNode
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
			child, found = refElementSet(node, i, v[i])
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

// refElementSet finds the field set of list element i (value v) in node:
// by index (i:N), by key fields (k:{...}) or by value (v:...), compared as
// JSON values (numbers exactly).
func refElementSet(node refFieldNode, i int, v any) (refFieldNode, bool) {
	if c, ok := node.get("i:" + strconv.Itoa(i)); ok {
		return c, true
	}
	decode := func(s string) (any, bool) {
		var x any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		return x, dec.Decode(&x) == nil
	}
	it := refMembers{raw: node.raw}
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
				return refFieldNode{raw: it.val, valid: true}, true
			}
		case strings.HasPrefix(it.key, "v:"):
			if want, ok := decode(it.key[2:]); ok && jsonpatch.Equal(v, want) {
				return refFieldNode{raw: it.val, valid: true}, true
			}
		}
	}
	return refFieldNode{}, false
}

// refElements walks the refElements of the JSON array raw: next moves to the
// next one and sets its text; text that is not an array ends the walk.
type refElements struct {
	raw string
	i   int
	val string
}

func (e *refElements) next() bool {
	raw, i := e.raw, e.i
	if i == 0 {
		i = refSkipSpace(raw, 0)
		if i >= len(raw) || raw[i] != '[' {
			return false
		}
		i++
	}
	for {
		i = refSkipSpace(raw, i)
		if i >= len(raw) || raw[i] == ']' {
			e.i = len(raw)
			return false
		}
		if raw[i] != ',' {
			break
		}
		i++
	}
	end := refValueEnd(raw, i)
	if end <= i { // the one change: it looped for ever on '}' (TestChangedByEndsOnTextThatIsNotJSON)
		e.i = len(raw)
		return false
	}
	e.val, e.i = raw[i:end], end
	return true
}

// refMembers walks the refMembers of the JSON object raw: next moves to the
// next one, whose key (unescaped) and value's text it sets; text that is
// not an object ends the walk early.
type refMembers struct {
	raw      string
	i        int
	key, val string
}

func (m *refMembers) next() bool {
	raw, i := m.raw, m.i
	if i == 0 {
		i = refSkipSpace(raw, 0)
		if i >= len(raw) || raw[i] != '{' {
			return false
		}
		i++
	}
	for {
		i = refSkipSpace(raw, i)
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
	end, escaped := refStringEnd(raw, i)
	if end < 0 {
		m.i = len(raw)
		return false
	}
	key := raw[i+1 : end-1]
	if escaped {
		var ok bool
		if key, ok = refUnquote(raw[i:end]); !ok {
			m.i = len(raw)
			return false
		}
	}
	i = refSkipSpace(raw, end)
	if i >= len(raw) || raw[i] != ':' {
		m.i = len(raw)
		return false
	}
	i = refSkipSpace(raw, i+1)
	vend := refValueEnd(raw, i)
	if vend < 0 {
		m.i = len(raw)
		return false
	}
	m.key, m.val, m.i = key, raw[i:vend], vend
	return true
}

// refUnquote decodes a JSON string with escapes (a k: key's quotes).
func refUnquote(q string) (string, bool) {
	var s string
	return s, json.Unmarshal([]byte(q), &s) == nil
}

func refSkipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// refStringEnd is the index after the JSON string starting at s[i] ('"'),
// and whether it holds escapes; -1 when it does not end. It jumps from
// quote to quote (most of a field set's text is inside strings).
func refStringEnd(s string, i int) (int, bool) {
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

// refValueEnd is the index after the JSON value starting at s[i]: a string,
// an object or array (found by its brackets, strings skipped) or a
// scalar; -1 when it does not end.
func refValueEnd(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		end, _ := refStringEnd(s, i)
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
			end, _ := refStringEnd(s, j)
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
