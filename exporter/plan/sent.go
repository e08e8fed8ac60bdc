package plan

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// sentAhead is the modification a record was written ahead of (Ahead):
// the delivered state with Sent naming a newer version, which the sink
// may hold already (killed after the sink stored it, before the record
// moved). Nil for any other record: one written ahead of an added
// (Provisional) or a deletion (Deleting), and a delivered state whose Sent
// only keeps when it was observed (Sent.ResourceVersion is its own).
func sentAhead(last state.Record) *state.Sent {
	s := last.Sent
	if s == nil || last.Deleting || last.Provisional || s.ResourceVersion == "" || s.ResourceVersion == last.ResourceVersion {
		return nil
	}
	return s
}

// sentState is the object a modification written ahead of its send
// carried: base (the record's state) with the sent patch applied, at the
// sent version. Both are what the sink was sent (redacted when they rest
// in a checkpoint; a redactor leaves a redacted value as it is), so the
// result is the state the sink holds if it stored the modification. A
// patch that does not apply leaves base's content, still at the sent
// version: the deletion must not name a version older than the sink's.
// base is shared with caches and never modified.
func sentState(base *unstructured.Unstructured, s *state.Sent) *unstructured.Unstructured {
	m := base.Object
	if patched, err := jsonpatch.Apply(m, decodedOps(s.Patch)); err == nil {
		if pm, ok := patched.(map[string]any); ok {
			m = pm
		}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	md := map[string]any{}
	if old, ok := m["metadata"].(map[string]any); ok {
		md = make(map[string]any, len(old))
		for k, v := range old {
			md[k] = v
		}
	}
	md["resourceVersion"] = s.ResourceVersion
	out["metadata"] = md
	return &unstructured.Unstructured{Object: out}
}

// decodedOps returns ops with their values' numbers as a checkpoint
// restores a state and apimachinery decodes an object (int64 when
// integral and in range, else float64), not as json.Number, which is how
// a restored patch holds them (jsonpatch.Op.UnmarshalJSON): filters and
// diffs of the object then see the numbers they see everywhere else.
func decodedOps(ops []jsonpatch.Op) []jsonpatch.Op {
	out := make([]jsonpatch.Op, len(ops))
	for i, op := range ops {
		op.Value = decodedNumbers(op.Value)
		out[i] = op
	}
	return out
}

func decodedNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, c := range t {
			out[k] = decodedNumbers(c)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			out[i] = decodedNumbers(c)
		}
		return out
	}
	return v
}

// NewerVersion reports whether resourceVersion a is newer than b. Both
// are opaque to clients, but the API server writes them as decimal
// integers (etcd revisions); when either is not one, a is not newer.
func NewerVersion(a, b string) bool {
	if !decimal(a) || !decimal(b) {
		return false
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

// decimal reports whether s is a decimal integer without leading zeros.
func decimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
