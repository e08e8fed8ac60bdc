package plan

import (
	"encoding/json"
	"maps"
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
	raw    string    // the entry's text
}

// fieldNode is a fieldsV1 set or a set inside one, as its JSON text.
type fieldNode struct {
	raw   string
	valid bool
}

func (n fieldNode) ok() bool { return n.valid }

// child is the set under the key prefix+name, and whether n owns its
// field whole (its "." member): one pass over n's members.
func (n fieldNode) child(prefix, name string) (c fieldNode, found, whole bool) {
	it := members{raw: n.raw}
	for it.next() {
		switch {
		case it.keyIs(".", ""):
			return fieldNode{}, false, true
		case !found && it.keyIs(prefix, name):
			c, found = fieldNode{raw: it.val, valid: true}, true
		}
	}
	return c, found, false
}

// empty reports a set with no members: a field owned as a leaf. A set's
// text is a whole value (valueEnd found its end), so the value of its
// first member ends too: only the key and colon before it are read.
func (n fieldNode) empty() bool {
	it := members{raw: n.raw}
	return !it.nextKey()
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
	out := maps.Clone(obj)
	// One member fewer: sized for what it holds, a metadata of eight
	// members stays a small map (one allocation, not a table).
	nmd := make(map[string]any, len(md)-1)
	for k, v := range md {
		if k != "managedFields" {
			nmd[k] = v
		}
	}
	out["metadata"] = nmd
	return out
}

// managedText is obj's managedFields text; ok is false when it has none
// (not kept, or written before attribution was on).
func managedText(obj map[string]any) (text string, ok bool) {
	md, _ := obj["metadata"].(map[string]any)
	text, ok = md["managedFields"].(string)
	return text, ok
}

// managedEntries appends the entries of text (managedFields' text) to
// dst. same are the entries of another version, already read: an element
// whose text starts with one of theirs is that entry (a JSON value ends
// where its text says), taken without reading it again. Most of a
// change's entries are the previous version's, byte for byte.
func managedEntries(dst []managedEntry, text string, same []managedEntry) []managedEntry {
	it := elements{raw: text}
	next := 0 // the entry of same to try first: they come in order
	for {
		i, ok := it.seek()
		if !ok {
			return dst
		}
		if k := sameEntry(text[i:], same, next); k >= 0 {
			dst = append(dst, same[k])
			it.i, next = i+len(same[k].raw), k+1
			continue
		}
		me, end := readEntry(text[i:], same)
		if end <= 0 {
			// Not a value (a '}' where an element belongs): the walk
			// ends here rather than stepping on the spot.
			return dst
		}
		it.i = i + end
		if me.Manager != "" {
			dst = append(dst, me)
		}
	}
}

// readEntry reads the entry whose text starts s, and where it ends (0
// when no value does): one pass over its members, which finds its end
// too. An element that is not an object, or not one whose members read
// to its '}', is taken to where its brackets end, and what its members
// say up to there.
func readEntry(s string, same []managedEntry) (managedEntry, int) {
	me, end := entryMembers(s, same)
	if end == 0 {
		if end = valueEnd(s, 0); end <= 0 {
			return managedEntry{}, 0
		}
		me, _ = entryMembers(s[:end], same)
	}
	me.raw = s[:end]
	return me, end
}

// entryMembers reads the members of the object at the start of s, and
// the index after its '}' (0 when the walk did not reach it).
func entryMembers(s string, same []managedEntry) (managedEntry, int) {
	var me managedEntry
	m := members{raw: s}
	for m.nextKey() {
		key := m.keyText()
		if !m.value(sameFields(key, same)) {
			return me, 0
		}
		switch key {
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
	return me, m.end
}

// sameFields are the field sets of same when key is fieldsV1: an entry
// written again (its time moved) most often owns what it owned.
func sameFields(key string, same []managedEntry) []managedEntry {
	if key != "fieldsV1" {
		return nil
	}
	return same
}

// sameEntry is the index of the entry of same whose text starts s,
// trying from next on first; -1 when none does.
func sameEntry(s string, same []managedEntry, next int) int {
	for j := range same {
		k := (next + j) % len(same)
		if strings.HasPrefix(s, same[k].raw) {
			return k
		}
	}
	return -1
}

// maxEntries is how many managedFields entries ChangedBy reads without
// allocating: objects rarely have more than a few managers.
const maxEntries = 8

// ChangedBy names who made a change of kind from prev (modified only; nil
// when unknown) to cur, whose visible patch is ops. Nil when the
// managedFields say nothing.
func ChangedBy(kind event.Change, prev, cur map[string]any, ops []jsonpatch.Op) []event.FieldManager {
	text, ok := managedText(cur)
	if !ok {
		return nil
	}
	var curBuf [maxEntries]managedEntry
	entries := managedEntries(curBuf[:0], text, nil)
	if len(entries) == 0 {
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
	var oldBuf [maxEntries]managedEntry
	var old []managedEntry
	oldText, known := managedText(prev)
	if known {
		old = managedEntries(oldBuf[:0], oldText, entries)
	}
	// before is e's entry in the previous version (the last of its key);
	// zero when it had none.
	before := func(e *managedEntry) (managedEntry, bool) {
		for j := len(old) - 1; j >= 0; j-- {
			if old[j].key() == e.key() {
				return old[j], true
			}
		}
		return managedEntry{}, false
	}
	// moved: new entries, and those whose time moved. An entry without a
	// time (the API server records none for writes through the scale
	// subresource) may have moved too: it is a candidate, named only when
	// it owns a changed path.
	var movedBuf, candBuf [maxEntries]managedEntry
	moved, candidates := movedBuf[:0], candBuf[:0]
	if known {
		for i := range entries {
			e := &entries[i]
			b, ok := before(e)
			switch {
			case !ok || b.Time != e.Time:
				moved = append(moved, *e)
				candidates = append(candidates, *e)
			case e.Time == "":
				candidates = append(candidates, *e)
			}
		}
	}
	if len(candidates) == 0 {
		// No entry moved (the previous version kept no managedFields, or
		// two writes in one second): whoever owns a changed path.
		candidates = entries
	}
	// The patch's paths, as tokens: path k is toks[ends[k-1]:ends[k]].
	var toks []string
	var ends []int
	var tokBuf [64]string
	var endBuf [16]int
	// Narrowed to the owners of a changed path; a moved entry without a
	// field set cannot be narrowed and stays.
	var owners []event.FieldManager
	for i := range candidates {
		e := &candidates[i]
		if !e.fields.ok() {
			if isIn(moved, *e) {
				owners = append(owners, e.FieldManager)
			}
			continue
		}
		if ends == nil {
			toks, ends = pointers(tokBuf[:0], endBuf[:0], ops)
		}
		b, _ := before(e)
		if ownsAny(e, b, prev, cur, toks, ends) {
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
func ownsAny(e *managedEntry, before managedEntry, prev, cur map[string]any, toks []string, ends []int) bool {
	from := 0
	for _, end := range ends {
		path := toks[from:end]
		from = end
		if owns(e.fields, path, cur) || (prev != nil && before.fields.ok() && owns(before.fields, path, prev)) {
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
		var child fieldNode
		var found, whole bool
		var next func() any // the value at t, looked up only when walked on
		switch v := val.(type) {
		case map[string]any:
			child, found, whole = node.child("f:", t)
			next = func() any { return v[t] }
		case []any:
			i, err := strconv.Atoi(t)
			if t == "-" {
				i, err = len(v)-1, nil
			}
			if err != nil || i < 0 || i >= len(v) {
				_, _, whole = node.child(".", "")
				return whole
			}
			child, found, whole = element(node, i, v[i], true)
			next = func() any { return v[i] }
		default:
			_, _, whole = node.child(".", "")
			return whole
		}
		if whole {
			return true
		}
		if !found {
			return false
		}
		if child.empty() {
			return true // a leaf: the field is owned whole
		}
		node, val = child, next()
	}
	return true
}

// elementSet finds the field set of list element i (value v) in node:
// by index (i:N), by key fields (k:{...}) or by value (v:...), compared as
// JSON values (numbers exactly).
func elementSet(node fieldNode, i int, v any) (fieldNode, bool) {
	c, found, _ := element(node, i, v, false)
	return c, found
}

// element is elementSet and, when dot, whether node owns the list whole
// (its "." member, which then wins): one pass over node's members, where
// i:N wins over the first k: or v: that matches.
func element(node fieldNode, i int, v any, dot bool) (c fieldNode, found, whole bool) {
	var byIndex, byKey fieldNode
	var atIndex, keyed bool
	it := members{raw: node.raw}
	for it.next() {
		switch {
		case dot && it.keyIs(".", ""):
			return fieldNode{}, false, true
		case atIndex:
		case it.keyHasPrefix("i:"):
			if it.keyIs("i:", strconv.Itoa(i)) {
				byIndex, atIndex = fieldNode{raw: it.val, valid: true}, true
			}
		case keyed:
		case it.keyHasPrefix("k:"):
			if keyMatches(it.keyText()[2:], v) {
				byKey, keyed = fieldNode{raw: it.val, valid: true}, true
			}
		case it.keyHasPrefix("v:"):
			if want, ok := decodeJSON(it.keyText()[2:]); ok && jsonpatch.Equal(v, want) {
				byKey, keyed = fieldNode{raw: it.val, valid: true}, true
			}
		}
	}
	if atIndex {
		return byIndex, true, false
	}
	return byKey, keyed, false
}

// keyMatches reports whether list element v has the key fields of a k:
// member, keys (a JSON object): each field equal as a JSON value.
func keyMatches(keys string, v any) bool {
	m, _ := v.(map[string]any)
	if m == nil {
		return false
	}
	if match, ok := stringKeysMatch(keys, m); ok {
		return match
	}
	x, ok := decodeJSON(keys)
	km, _ := x.(map[string]any)
	if !ok || km == nil {
		return false
	}
	for f, want := range km {
		if !jsonpatch.Equal(m[f], want) {
			return false
		}
	}
	return true
}
