package filters

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strconv"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// RedactedMarker replaces redacted values when no hash key is set.
const RedactedMarker = "<redacted>"

// SecretPaths are redacted in Secrets unless a rule says redact: none. The
// last-applied annotation holds a kubectl-applied Secret in plain text.
var SecretPaths = Patterns{
	MustPattern("/data/*"),
	MustPattern("/stringData/*"),
	MustPattern("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"),
}

// Redactor replaces the values at its patterns by a marker, or by a keyed
// hash (HMAC-SHA256) so that consumers still see that a value changed. It
// never modifies its input: it copies what it changes.
type Redactor struct {
	patterns Patterns
	key      []byte
}

// NewRedactor redacts patterns; a nil key writes RedactedMarker.
func NewRedactor(patterns Patterns, key []byte) *Redactor {
	return &Redactor{patterns: patterns, key: key}
}

// Object returns obj with its redacted values replaced; nulls stay null.
func (r *Redactor) Object(obj map[string]any) map[string]any {
	if r == nil || obj == nil {
		return obj
	}
	out, _ := r.walk(obj, nil).(map[string]any)
	return out
}

// Patterns returns what r redacts, for jsonpatch.Options.Opaque: a patch for a
// redacted object must not address paths below a redacted value, which the
// consumer holds as a marker or hash. Nil for a nil Redactor.
func (r *Redactor) Patterns() Patterns {
	if r == nil {
		return nil
	}
	return r.patterns
}

// Ops returns the patch with values at or below redacted paths replaced, at
// leaf granularity: an op whose value is a map or array holding redacted
// paths carries it with those values replaced, everything else kept.
// Applied to r.Object(old), a patch from jsonpatch.Options{Opaque:
// r.Patterns()}.Diff(old, new) yields r.Object(new). An op below a redacted
// path (from a diff without Opaque) has its whole value replaced. Remove ops
// and null values pass unchanged: a null reveals nothing, and Object keeps
// it too.
func (r *Redactor) Ops(ops []jsonpatch.Op) []jsonpatch.Op {
	if r == nil {
		return ops
	}
	var out []jsonpatch.Op
	for i, op := range ops {
		if op.Op == jsonpatch.OpRemove {
			continue
		}
		segs := splitPointer(op.Path)
		nv := r.walk(op.Value, segs)
		if sameRef(nv, op.Value) {
			continue
		}
		if out == nil {
			out = append([]jsonpatch.Op(nil), ops...)
		}
		out[i].Value = nv
	}
	if out == nil {
		return ops
	}
	return out
}

func (r *Redactor) walk(v any, segs []string) any {
	if v == nil {
		return nil
	}
	if r.patterns.MatchTokens(segs) {
		return r.replace(v)
	}
	if !r.patterns.BelowTokens(segs) {
		return v
	}
	switch t := v.(type) {
	case map[string]any:
		var out map[string]any
		for k, c := range t {
			nc := r.walk(c, append(segs[:len(segs):len(segs)], k))
			if !sameRef(nc, c) {
				if out == nil {
					out = make(map[string]any, len(t))
					for k2, v2 := range t {
						out[k2] = v2
					}
				}
				out[k] = nc
			}
		}
		if out != nil {
			return out
		}
	case []any:
		var out []any
		for i, c := range t {
			nc := r.walk(c, append(segs[:len(segs):len(segs)], strconv.Itoa(i)))
			if !sameRef(nc, c) {
				if out == nil {
					out = append([]any(nil), t...)
				}
				out[i] = nc
			}
		}
		if out != nil {
			return out
		}
	}
	return v
}

func (r *Redactor) replace(v any) any {
	if r.key == nil {
		return RedactedMarker
	}
	if s, ok := v.(string); ok && isHashed(s) {
		// Already redacted (a state a checkpoint kept, a patch of such
		// states): hashing it again would make one value two, and a
		// change sent again after a restart another event.
		return s
	}
	var b []byte
	if s, ok := v.(string); ok {
		b = []byte(s)
	} else {
		b, _ = json.Marshal(v)
	}
	m := hmac.New(sha256.New, r.key)
	m.Write(b)
	return hashedPrefix + hex.EncodeToString(m.Sum(nil))[:32]
}

// hashedPrefix and hashedLen are the shape of a hashed value.
const (
	hashedPrefix = "hmac-sha256:"
	hashedLen    = len(hashedPrefix) + 32
)

// isHashed reports whether s is a value as replace hashes it: the prefix
// and 32 lowercase hex digits.
func isHashed(s string) bool {
	if len(s) != hashedLen || s[:len(hashedPrefix)] != hashedPrefix {
		return false
	}
	for i := len(hashedPrefix); i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sameRef reports whether a walk returned its input unchanged.
func sameRef(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && len(x) == len(y) && (len(x) == 0 || mapID(x) == mapID(y))
	case []any:
		y, ok := b.([]any)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	case string:
		y, ok := b.(string)
		return ok && x == y
	}
	// Values decoded from JSON are all comparable; a value of another kind
	// (a map or slice of a concrete type, in an object built in code) would
	// make == panic: it counts as changed.
	if t := reflect.TypeOf(a); t != nil && !t.Comparable() {
		return false
	}
	return a == b
}
