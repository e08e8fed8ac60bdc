package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// The envelope encoder writes exactly what encoding/json writes for an
// Event (struct fields in order, omitempty, map keys sorted, no HTML
// escaping) plus the partitionkey extension before data, without
// reflection for the types decoded JSON is made of:
// maps, slices, strings, numbers, booleans and null. Anything else goes
// through encoding/json. Patch operations are written in place instead of
// through jsonpatch.Op.MarshalJSON, whose output encoding/json would parse and
// compact a second time.

// encoder holds the scratch space of one encoding.
type encoder struct {
	b     []byte
	keys  []string // a stack of map keys being written, one window per map
	types Types    // the naming of the type attribute
}

var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 4096), keys: make([]string, 0, 64)} }}

// appendEvent encodes e, its type named by types.
func appendEvent(e *Event, types Types) ([]byte, error) {
	return pooled(types, func(enc *encoder) error { return enc.event(e) })
}

// pooled runs write on a pooled encoder and returns a copy of what it
// wrote: the encoder goes back to the pool (unless its buffer grew past
// 1 MiB), never a slice of it.
func pooled(types Types, write func(*encoder) error) ([]byte, error) {
	enc := encoders.Get().(*encoder)
	enc.b = enc.b[:0]
	enc.types = types
	err := write(enc)
	out := bytes.Clone(enc.b)
	if cap(enc.b) <= 1<<20 {
		enc.keys = enc.keys[:0]
		encoders.Put(enc)
	}
	return out, err
}

func (enc *encoder) event(e *Event) error {
	if e == nil {
		enc.b = append(enc.b, "null"...)
		return nil
	}
	enc.field('{', "specversion", e.SpecVersion)
	enc.field(',', "id", e.ID)
	enc.field(',', "source", e.Source)
	enc.field(',', "type", enc.types.Of(e))
	enc.optional("subject", e.Subject)
	// AppendText writes what MarshalJSON quotes (strict RFC 3339, the same
	// year range error) without a buffer of its own.
	enc.b = append(enc.b, `,"time":"`...)
	b, err := e.Time.AppendText(enc.b)
	if err != nil {
		// The error as encoding/json words it (MarshalJSON's, not
		// AppendText's); the rare failure pays for the second call.
		if _, merr := e.Time.MarshalJSON(); merr != nil {
			err = merr
		}
		return fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
	}
	enc.b = append(b, '"')
	enc.field(',', "datacontenttype", e.DataContentType)
	enc.field(',', "cluster", e.Cluster)
	enc.optional("apiversion", e.APIVersion)
	enc.optional("kind", e.Kind)
	enc.optional("resource", e.Resource)
	enc.optional("namespace", e.Namespace)
	enc.optional("name", e.Name)
	enc.optional("uid", e.UID)
	enc.optional("resourceversion", e.ResourceVersion)
	enc.optional("changedby", e.ChangedBy)
	enc.optional("partitionkey", e.PartitionKey())
	enc.b = append(enc.b, `,"data":`...)
	if err := enc.data(e.Data); err != nil {
		return err
	}
	enc.b = append(enc.b, '}')
	return nil
}

// data writes an event's data member.
func (enc *encoder) data(v any) error {
	if d, ok := v.(*ChangeData); ok {
		return enc.changeData(d)
	}
	return enc.value(v)
}

// appendData encodes an event's data as appendEvent writes it.
func appendData(v any) ([]byte, error) {
	return pooled(KubefeedTypes, func(enc *encoder) error { return enc.data(v) })
}

func (enc *encoder) field(sep byte, name, v string) {
	enc.b = append(enc.b, sep, '"')
	enc.b = append(enc.b, name...)
	enc.b = append(enc.b, '"', ':')
	enc.b = appendString(enc.b, v)
}

func (enc *encoder) optional(name, v string) {
	if v != "" {
		enc.field(',', name, v)
	}
}

func (enc *encoder) changeData(d *ChangeData) error {
	if d == nil {
		enc.b = append(enc.b, "null"...)
		return nil
	}
	enc.b = append(enc.b, `{"object":`...)
	if err := enc.object(d.Object); err != nil {
		return err
	}
	if len(d.OldObject) > 0 {
		enc.b = append(enc.b, `,"oldObject":`...)
		if err := enc.object(d.OldObject); err != nil {
			return err
		}
	}
	if len(d.Patch) > 0 {
		enc.b = append(enc.b, `,"patch":[`...)
		for i, op := range d.Patch {
			if i > 0 {
				enc.b = append(enc.b, ',')
			}
			if err := enc.op(op); err != nil {
				return err
			}
		}
		enc.b = append(enc.b, ']')
	}
	if len(d.ChangedPaths) > 0 {
		enc.b = append(enc.b, `,"changedPaths":`...)
		enc.strings(d.ChangedPaths)
	}
	enc.optional("previousResourceVersion", d.PreviousResourceVersion)
	enc.b = append(enc.b, `,"recovered":`...)
	enc.b = strconv.AppendBool(enc.b, d.Recovered)
	enc.optional("truncated", d.Truncated)
	if d.InvolvedObject != nil {
		enc.b = append(enc.b, `,"involvedObject":`...)
		enc.involved(d.InvolvedObject)
	}
	if len(d.ChangedBy) > 0 {
		enc.b = append(enc.b, `,"changedBy":[`...)
		for i, f := range d.ChangedBy {
			if i > 0 {
				enc.b = append(enc.b, ',')
			}
			enc.field('{', "manager", f.Manager)
			enc.field(',', "operation", f.Operation)
			enc.optional("subresource", f.Subresource)
			enc.optional("time", f.Time)
			enc.b = append(enc.b, '}')
		}
		enc.b = append(enc.b, ']')
	}
	enc.b = append(enc.b, '}')
	return nil
}

func (enc *encoder) op(o jsonpatch.Op) error {
	enc.field('{', "op", o.Op)
	enc.field(',', "path", o.Path)
	if o.Op != jsonpatch.OpRemove {
		enc.b = append(enc.b, `,"value":`...)
		if err := enc.value(o.Value); err != nil {
			return fmt.Errorf("op %s %s: %w", o.Op, o.Path, err)
		}
	}
	enc.b = append(enc.b, '}')
	return nil
}

func (enc *encoder) involved(io *InvolvedObject) {
	sep := byte('{')
	if len(io.Labels) > 0 {
		enc.b = append(enc.b, sep)
		enc.b = append(enc.b, `"labels":`...)
		enc.stringMap(io.Labels)
		sep = ','
	}
	if len(io.Annotations) > 0 {
		enc.b = append(enc.b, sep)
		enc.b = append(enc.b, `"annotations":`...)
		enc.stringMap(io.Annotations)
		sep = ','
	}
	if len(io.OwnerReferences) > 0 {
		enc.b = append(enc.b, sep)
		enc.b = append(enc.b, `"ownerReferences":[`...)
		for i, o := range io.OwnerReferences {
			if i > 0 {
				enc.b = append(enc.b, ',')
			}
			enc.field('{', "apiVersion", o.APIVersion)
			enc.field(',', "kind", o.Kind)
			enc.field(',', "name", o.Name)
			enc.field(',', "uid", o.UID)
			if o.Controller != nil {
				enc.b = append(enc.b, `,"controller":`...)
				enc.b = strconv.AppendBool(enc.b, *o.Controller)
			}
			if o.BlockOwnerDeletion != nil {
				enc.b = append(enc.b, `,"blockOwnerDeletion":`...)
				enc.b = strconv.AppendBool(enc.b, *o.BlockOwnerDeletion)
			}
			enc.b = append(enc.b, '}')
		}
		enc.b = append(enc.b, ']')
		sep = ','
	}
	if sep == '{' {
		enc.b = append(enc.b, '{')
	}
	enc.b = append(enc.b, '}')
}

// value writes any value as encoding/json would.
func (enc *encoder) value(v any) error {
	switch x := v.(type) {
	case nil:
		enc.b = append(enc.b, "null"...)
	case string:
		enc.b = appendString(enc.b, x)
	case bool:
		enc.b = strconv.AppendBool(enc.b, x)
	case int64:
		enc.b = strconv.AppendInt(enc.b, x, 10)
	case int:
		enc.b = strconv.AppendInt(enc.b, int64(x), 10)
	case int32:
		enc.b = strconv.AppendInt(enc.b, int64(x), 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return enc.reflect(v)
		}
		enc.b = appendFloat(enc.b, x)
	case map[string]any:
		return enc.object(x)
	case []any:
		if x == nil {
			enc.b = append(enc.b, "null"...)
			return nil
		}
		enc.b = append(enc.b, '[')
		for i, e := range x {
			if i > 0 {
				enc.b = append(enc.b, ',')
			}
			if err := enc.value(e); err != nil {
				return err
			}
		}
		enc.b = append(enc.b, ']')
	case map[string]string:
		enc.stringMap(x)
	case []string:
		enc.strings(x)
	default:
		return enc.reflect(v)
	}
	return nil
}

// reflect writes v through encoding/json (json.Number, structs, other
// numeric types, and the errors of NaN and infinities).
func (enc *encoder) reflect(v any) error {
	var buf bytes.Buffer
	je := json.NewEncoder(&buf)
	je.SetEscapeHTML(false)
	if err := je.Encode(v); err != nil {
		return err
	}
	enc.b = append(enc.b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
	return nil
}

// object writes a map with its keys sorted; nil is null.
func (enc *encoder) object(m map[string]any) error {
	if m == nil {
		enc.b = append(enc.b, "null"...)
		return nil
	}
	start := len(enc.keys)
	for k := range m {
		enc.keys = append(enc.keys, k)
	}
	slices.Sort(enc.keys[start:])
	enc.b = append(enc.b, '{')
	for i := start; i < len(enc.keys); i++ {
		if i > start {
			enc.b = append(enc.b, ',')
		}
		k := enc.keys[i]
		enc.b = appendString(enc.b, k)
		enc.b = append(enc.b, ':')
		if err := enc.value(m[k]); err != nil {
			enc.keys = enc.keys[:start]
			return err
		}
	}
	enc.keys = enc.keys[:start]
	enc.b = append(enc.b, '}')
	return nil
}

func (enc *encoder) stringMap(m map[string]string) {
	if m == nil {
		enc.b = append(enc.b, "null"...)
		return
	}
	start := len(enc.keys)
	for k := range m {
		enc.keys = append(enc.keys, k)
	}
	slices.Sort(enc.keys[start:])
	enc.b = append(enc.b, '{')
	for i := start; i < len(enc.keys); i++ {
		if i > start {
			enc.b = append(enc.b, ',')
		}
		enc.b = appendString(enc.b, enc.keys[i])
		enc.b = append(enc.b, ':')
		enc.b = appendString(enc.b, m[enc.keys[i]])
	}
	enc.keys = enc.keys[:start]
	enc.b = append(enc.b, '}')
}

func (enc *encoder) strings(s []string) {
	if s == nil {
		enc.b = append(enc.b, "null"...)
		return
	}
	enc.b = append(enc.b, '[')
	for i, x := range s {
		if i > 0 {
			enc.b = append(enc.b, ',')
		}
		enc.b = appendString(enc.b, x)
	}
	enc.b = append(enc.b, ']')
}
