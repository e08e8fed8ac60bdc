package jsonpatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Op is one RFC 6902 operation. Only add, remove and replace are produced.
type Op struct {
	Op   string
	Path string
	// Value is the value of add and replace, nil meaning JSON null; remove
	// has none.
	Value any
}

// Operations.
const (
	OpAdd     = "add"
	OpRemove  = "remove"
	OpReplace = "replace"
)

// MarshalJSON writes {"op","path","value"}: add and replace always carry
// "value", null included (RFC 6902 requires the member); remove never does.
// It leaves HTML characters unescaped: the encoder that calls it escapes
// them or not, as it is configured.
func (o Op) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	var err error
	if o.Op == OpRemove {
		err = e.Encode(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	} else {
		err = e.Encode(struct {
			Op    string `json:"op"`
			Path  string `json:"path"`
			Value any    `json:"value"`
		}{o.Op, o.Path, o.Value})
	}
	if err != nil {
		return nil, fmt.Errorf("op %s %s: %w", o.Op, o.Path, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads an operation; numbers are kept as json.Number so
// that integers beyond 2^53 keep every digit.
func (o *Op) UnmarshalJSON(b []byte) error {
	var raw struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("json patch op: %w", err)
	}
	*o = Op{Op: raw.Op, Path: raw.Path}
	if len(raw.Value) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw.Value))
	d.UseNumber()
	if err := d.Decode(&o.Value); err != nil {
		return fmt.Errorf("json patch op %s %s: value: %w", raw.Op, raw.Path, err)
	}
	return nil
}

// EscapeToken escapes one JSON pointer reference token (RFC 6901).
func EscapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// pointer joins unescaped reference tokens into a JSON pointer.
func pointer(tokens []string) string {
	n := 0
	for _, t := range tokens {
		n += 1 + len(t)
	}
	var sb strings.Builder
	sb.Grow(n + 4)
	for _, t := range tokens {
		sb.WriteByte('/')
		if !strings.ContainsAny(t, "~/") {
			sb.WriteString(t)
			continue
		}
		for i := 0; i < len(t); i++ {
			switch t[i] {
			case '~':
				sb.WriteString("~0")
			case '/':
				sb.WriteString("~1")
			default:
				sb.WriteByte(t[i])
			}
		}
	}
	return sb.String()
}

// ChangedPaths lists the paths the patch touches, in patch order, each once.
func ChangedPaths(ops []Op) []string {
	out := make([]string, 0, len(ops))
	seen := make(map[string]struct{}, len(ops))
	for _, op := range ops {
		if _, ok := seen[op.Path]; ok {
			continue
		}
		seen[op.Path] = struct{}{}
		out = append(out, op.Path)
	}
	return out
}
