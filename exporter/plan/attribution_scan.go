package plan

import (
	"encoding/json"
	"math/bits"
	"strings"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Reading managedFields' JSON text in place (attribution.go): iterators
// over an array's elements and an object's members that find where each
// value ends without building it, and the patch's pointers and k: keys
// read without allocating. Text that is not JSON ends a walk early;
// nothing here panics or loops on it.

// elements walks the elements of the JSON array raw: next moves to the
// next one and sets its text; text that is not an array ends the walk.
type elements struct {
	raw     string
	i       int
	started bool
	val     string
}

// seek moves to the start of the next element and returns its index;
// false at the end of the array (or of text that is not one).
func (e *elements) seek() (int, bool) {
	raw, i := e.raw, e.i
	if !e.started {
		e.started = true
		i = skipSpace(raw, 0)
		if i >= len(raw) || raw[i] != '[' {
			e.i = len(raw)
			return 0, false
		}
		i++
	}
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == ']' {
			e.i = len(raw)
			return 0, false
		}
		if raw[i] != ',' {
			break
		}
		i++
	}
	e.i = i
	return i, true
}

func (e *elements) next() bool {
	i, ok := e.seek()
	if !ok {
		return false
	}
	end := valueEnd(e.raw, i)
	if end <= i {
		// Not a value (a '}' where an element belongs): the walk ends
		// here rather than stepping on the spot.
		e.i = len(e.raw)
		return false
	}
	e.val, e.i = e.raw[i:end], end
	return true
}

// members walks the members of the JSON object raw: next moves to the
// next one, whose key and value's text it sets; text that is not an
// object ends the walk early. The key is its text between the quotes,
// unescaped only when asked (keyIs, keyText): most keys have no escapes,
// and those that do (k:{"name":...}) are mostly not the one looked for.
type members struct {
	raw      string
	i        int
	key, val string
	esc      bool // key holds escapes (checked valid)
	end      int  // the index after the object's '}', once the walk met it
}

func (m *members) next() bool {
	return m.nextKey() && m.value(nil)
}

// nextKey moves to the next member and reads its key, up to the start of
// its value (m.i); the value is the caller's to read (value).
func (m *members) nextKey() bool {
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
		if i >= len(raw) {
			m.i = len(raw)
			return false
		}
		if raw[i] == '}' {
			m.i, m.end = len(raw), i+1
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
	if end < 0 || (escaped && !validEscapes(raw[i+1:end-1])) {
		m.i = len(raw)
		return false
	}
	key := raw[i+1 : end-1]
	i = skipSpace(raw, end)
	if i >= len(raw) || raw[i] != ':' {
		m.i = len(raw)
		return false
	}
	m.key, m.esc, m.i = key, escaped, skipSpace(raw, i+1)
	return true
}

// value reads the value of the member whose key nextKey read: a field
// set of same whose text starts there is taken as it is, any other value
// is read to its end. False when it does not end.
func (m *members) value(same []managedEntry) bool {
	rest := m.raw[m.i:]
	for k := range same {
		if f := same[k].fields; f.ok() && strings.HasPrefix(rest, f.raw) {
			m.val, m.i = f.raw, m.i+len(f.raw)
			return true
		}
	}
	vend := valueEnd(m.raw, m.i)
	if vend < 0 {
		m.i = len(m.raw)
		return false
	}
	m.val, m.i = m.raw[m.i:vend], vend
	return true
}

// keyText is the member's key, unescaped.
func (m *members) keyText() string {
	if !m.esc {
		return m.key
	}
	s, _ := unquote(`"` + m.key + `"`)
	return s
}

// keyIs reports whether the member's key is prefix+name.
func (m *members) keyIs(prefix, name string) bool {
	if !m.esc {
		return len(m.key) == len(prefix)+len(name) && m.key[:len(prefix)] == prefix && m.key[len(prefix):] == name
	}
	// An escape changes no byte before it: a key that differs from the
	// one looked for there is not it either.
	if s := prefix + name; m.key[0] != '\\' && (s == "" || m.key[0] != s[0]) {
		return false
	}
	return m.keyText() == prefix+name
}

// keyHasPrefix reports whether the member's key starts with p (two
// bytes, no escapes).
func (m *members) keyHasPrefix(p string) bool {
	if !m.esc || (m.key[0] != '\\' && m.key[1] != '\\') {
		return strings.HasPrefix(m.key, p)
	}
	return strings.HasPrefix(m.keyText(), p)
}

// validEscapes reports whether the text between a JSON string's quotes
// holds only escapes that JSON allows (\uXXXX with four hex digits) and no
// control bytes: what encoding/json would unquote without an error.
func validEscapes(s string) bool {
	for j := 0; j < len(s); j++ {
		c := s[j]
		switch {
		case c < 0x20:
			return false
		case c != '\\':
			continue
		}
		j++
		if j >= len(s) {
			return false
		}
		switch s[j] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if j+5 > len(s) {
				return false
			}
			for _, h := range []byte(s[j+1 : j+5]) {
				if !isHex(h) {
					return false
				}
			}
			j += 4
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
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

// unquote decodes a JSON string with escapes (a k: key's quotes). The
// escapes field sets hold (\" and \\) are undone here; others go through
// encoding/json.
func unquote(q string) (string, bool) {
	if len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' {
		var b strings.Builder
		b.Grow(len(q) - 2)
		simple := true
		for j := 1; j < len(q)-1; j++ {
			c := q[j]
			switch {
			case c == '\\' && j+1 < len(q)-1 && (q[j+1] == '"' || q[j+1] == '\\'):
				j++
				b.WriteByte(q[j])
				continue
			case c == '\\' || c == '"' || c < 0x20 || c >= 0x80:
				// Any other escape, a bare quote, a control byte or
				// UTF-8 (which encoding/json checks and may replace).
				simple = false
			}
			if !simple {
				break
			}
			b.WriteByte(c)
		}
		if simple {
			return b.String(), true
		}
	}
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
// and whether it holds escapes; -1 when it does not end.
func stringEnd(s string, i int) (int, bool) {
	escaped := false
	for j := i + 1; ; {
		j = quoteOrEscape(s, j)
		switch {
		case j >= len(s):
			return -1, false
		case s[j] == '"':
			return j + 1, escaped
		}
		escaped = true
		j += 2
	}
}

// quoteOrEscape is the index of the first '"' or '\\' in s from j on,
// len(s) or more when there is none. It looks at eight bytes at a time:
// a field set's text is mostly short strings, too short for a search
// call to pay.
func quoteOrEscape(s string, j int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; j+8 <= len(s); j += 8 {
		v := uint64(s[j]) | uint64(s[j+1])<<8 | uint64(s[j+2])<<16 | uint64(s[j+3])<<24 |
			uint64(s[j+4])<<32 | uint64(s[j+5])<<40 | uint64(s[j+6])<<48 | uint64(s[j+7])<<56
		q, e := v^(ones*'"'), v^(ones*'\\')
		// A byte of q or e that is zero sets its high bit here; the
		// lowest one set is the first match.
		if m := ((q-ones)&^q | (e-ones)&^e) & highs; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for ; j < len(s); j++ {
		if s[j] == '"' || s[j] == '\\' {
			return j
		}
	}
	return j
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
		for j < len(s) && !scalarEnd[s[j]] {
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

// scalarEnd holds the bytes that end a number, true, false or null: in
// text that is not JSON a quote or bracket too, so that the walk of an
// entry's members meets its strings and brackets where valueEnd does, and
// ends where its brackets end (managedEntries reads an entry in one walk).
var scalarEnd = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\r': true, '\n': true, '"': true, '{': true, '[': true}

// pointers appends to toks the tokens of ops' paths (RFC 6901 pointers,
// unescaped), and to ends where each path's end: a path that is not a
// pointer is left out.
func pointers(toks []string, ends []int, ops []jsonpatch.Op) ([]string, []int) {
	for _, op := range ops {
		p := op.Path
		if p != "" && p[0] != '/' {
			continue
		}
		from, ok := len(toks), true
		for p != "" && ok {
			p = p[1:]
			end := strings.IndexByte(p, '/')
			if end < 0 {
				end = len(p)
			}
			t := p[:end]
			if strings.IndexByte(t, '~') >= 0 {
				t, ok = unescapeToken(t)
			}
			toks = append(toks, t)
			p = p[end:]
		}
		if ok {
			ends = append(ends, len(toks))
		} else {
			toks = toks[:from]
		}
	}
	return toks, ends
}

// unescapeToken undoes a pointer token's ~0 and ~1; false when a ~ is
// followed by anything else.
func unescapeToken(t string) (string, bool) {
	var b strings.Builder
	b.Grow(len(t))
	for j := 0; j < len(t); j++ {
		if t[j] != '~' {
			b.WriteByte(t[j])
			continue
		}
		if j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1') {
			return "", false
		}
		if t[j+1] == '0' {
			b.WriteByte('~')
		} else {
			b.WriteByte('/')
		}
		j++
	}
	return b.String(), true
}

// stringKeysMatch is keyMatches for key fields whose names and values are
// all strings without escapes, read in place (a container's or a volume's
// name); ok is false for any other keys.
func stringKeysMatch(keys string, m map[string]any) (match, ok bool) {
	var names [4]string
	n := 0
	match = true
	i := skipSpace(keys, 0)
	if i >= len(keys) || keys[i] != '{' {
		return false, false
	}
	i = skipSpace(keys, i+1)
	if i < len(keys) && keys[i] == '}' {
		return true, skipSpace(keys, i+1) == len(keys)
	}
	for {
		name, j, ok := plainString(keys, i)
		if !ok {
			return false, false
		}
		if j = skipSpace(keys, j); j >= len(keys) || keys[j] != ':' {
			return false, false
		}
		val, j, ok := plainString(keys, skipSpace(keys, j+1))
		if !ok || n == len(names) {
			return false, false
		}
		for _, seen := range names[:n] {
			if seen == name {
				return false, false // decoded, the last one counts
			}
		}
		names[n] = name
		n++
		if s, isString := m[name].(string); !isString || s != val {
			match = false
		}
		i = skipSpace(keys, j)
		if i >= len(keys) {
			return false, false
		}
		switch keys[i] {
		case ',':
			i = skipSpace(keys, i+1)
		case '}':
			return match, skipSpace(keys, i+1) == len(keys)
		default:
			return false, false
		}
	}
}

// plainString is the JSON string at s[i] when it has no escapes and no
// bytes that encoding/json would check (control bytes, UTF-8), and the
// index after it.
func plainString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", 0, false
		}
	}
	return "", 0, false
}

// decodeJSON decodes the first JSON value of s, numbers as json.Number.
func decodeJSON(s string) (any, bool) {
	var x any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	return x, dec.Decode(&x) == nil
}
