package sinks

import (
	"errors"
	"fmt"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// Content modes.
const (
	ModeStructured = "structured"
	ModeBinary     = "binary"
)

// ErrTooLarge is returned by Encode when an event does not fit even after
// shrinking.
var ErrTooLarge = errors.New("event too large")

// Truncation levels written to data.truncated, in the order Encode tries
// them when an event is larger than the sink's limit.
const (
	TruncatedOldObject = "oldObject" // data.oldObject dropped
	TruncatedObject    = "object"    // data.object reduced to its identity; patch kept
	TruncatedAll       = "all"       // identity only: a dead-letter stub
)

// Encoded is an event ready for the wire.
type Encoded struct {
	Event *event.Event
	// Body is the whole event (structured) or its data (binary).
	Body []byte
	// Headers are the ce-* attributes and content type in binary mode.
	Headers [][2]string
}

// Size is what the encoded event weighs on the wire, headers included.
func (e Encoded) Size() int {
	n := len(e.Body)
	for _, h := range e.Headers {
		n += len(h[0]) + len(h[1]) + 4
	}
	return n
}

// Format is how a sink writes events: the content mode and the naming
// of their types (a block's "mode" and "types").
type Format struct {
	// Mode: ModeStructured ("" too) or ModeBinary.
	Mode string
	// Types: TypesKubefeed ("" too) or TypesKnative.
	Types string
}

// Namings of the type attribute (a block's "types").
const (
	TypesKubefeed = "kubefeed" // io.kubefeed.resource.added, …
	TypesKnative  = "knative"  // ApiServerSource's dev.knative.apiserver.resource.add, …
)

// EventTypes is the event package's naming for a block's types.
func (f Format) EventTypes() event.Types {
	if f.Types == TypesKnative {
		return event.KnativeTypes
	}
	return event.KubefeedTypes
}

// Encode encodes an event in mode. When limit > 0 and the event is larger,
// it applies the documented policy: drop data.oldObject, then reduce
// data.object to its identity (the patch stays); when even that does not
// fit it returns ErrTooLarge. The caller's event is never modified.
func Encode(e *event.Event, mode string, limit int) (Encoded, error) {
	return EncodeInto(nil, e, mode, limit)
}

// EncodeInto is Encode writing a structured body into buf's storage
// (from buf[:0]; it grows as needed): a sink that publishes the body and
// is then done with it can reuse buf for the next event. Body shares
// buf's storage, so buf must not be reused while Body is in use. A nil
// buf is Encode: Body is then the caller's own.
func EncodeInto(buf []byte, e *event.Event, mode string, limit int) (Encoded, error) {
	return EncodeAs(buf, e, Format{Mode: mode}, limit)
}

// EncodeAs is EncodeInto in format f: with f.Types knative, the type on
// the wire is ApiServerSource's (the event keeps its own).
func EncodeAs(buf []byte, e *event.Event, f Format, limit int) (Encoded, error) {
	mode, types := f.Mode, f.EventTypes()
	one := func(e *event.Event, mode string) (Encoded, error) {
		if buf == nil || mode == ModeBinary {
			return encode(e, mode, types)
		}
		b, err := event.AppendMarshalAs(buf[:0], e, types)
		if err != nil {
			return Encoded{}, fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		return Encoded{Event: e, Body: b}, nil
	}
	enc, err := one(e, mode)
	if err != nil || limit <= 0 || enc.Size() <= limit {
		return enc, err
	}
	d, ok := e.Data.(*event.ChangeData)
	if !ok {
		return enc, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, enc.Size(), limit)
	}
	size := enc.Size()
	for _, level := range []string{TruncatedOldObject, TruncatedObject} {
		if level == TruncatedOldObject && d.OldObject == nil {
			continue
		}
		enc, err = one(Truncate(e, level), mode)
		if err != nil {
			return enc, err
		}
		if enc.Size() <= limit {
			return enc, nil
		}
	}
	return enc, fmt.Errorf("%w: %d bytes (%d after shrinking), limit %d", ErrTooLarge, size, enc.Size(), limit)
}

// Truncate returns a copy of a change event shrunk to level.
func Truncate(e *event.Event, level string) *event.Event {
	d, ok := e.Data.(*event.ChangeData)
	if !ok {
		return e
	}
	cp := *e
	nd := *d
	nd.Truncated = level
	nd.OldObject = nil
	if level == TruncatedObject || level == TruncatedAll {
		nd.Object = identity(d.Object)
	}
	if level == TruncatedAll {
		nd.Patch, nd.ChangedPaths = nil, nil
	}
	cp.Data = &nd
	return &cp
}

func identity(obj map[string]any) map[string]any {
	out := map[string]any{"apiVersion": obj["apiVersion"], "kind": obj["kind"]}
	if md, ok := obj["metadata"].(map[string]any); ok {
		m := map[string]any{}
		for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "labels"} {
			if v, ok := md[k]; ok {
				m[k] = v
			}
		}
		out["metadata"] = m
	}
	return out
}

func encode(e *event.Event, mode string, types event.Types) (Encoded, error) {
	if mode != ModeBinary {
		b, err := event.MarshalAs(e, types)
		if err != nil {
			return Encoded{}, fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		return Encoded{Event: e, Body: b}, nil
	}
	b, err := event.MarshalData(e)
	if err != nil {
		return Encoded{}, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return Encoded{Event: e, Body: b, Headers: binaryHeaders(e, types)}, nil
}

// binaryHeaders are the CloudEvents binary-mode attributes (ce-*) and the
// content type.
func binaryHeaders(e *event.Event, types event.Types) [][2]string {
	h := make([][2]string, 0, 17)
	h = append(h, [][2]string{
		{"ce-specversion", e.SpecVersion},
		{"ce-id", e.ID},
		{"ce-source", e.Source},
		{"ce-type", types.Of(e)},
		{"ce-time", e.Time.UTC().Format(time.RFC3339Nano)},
		{"Content-Type", e.DataContentType},
	}...)
	for _, kv := range [][2]string{
		{"ce-subject", e.Subject}, {"ce-cluster", e.Cluster}, {"ce-apiversion", e.APIVersion}, {"ce-kind", e.Kind},
		{"ce-resource", e.Resource}, {"ce-namespace", e.Namespace}, {"ce-name", e.Name}, {"ce-uid", e.UID},
		{"ce-resourceversion", e.ResourceVersion}, {"ce-changedby", e.ChangedBy}, {"ce-partitionkey", e.PartitionKey()},
	} {
		if kv[1] != "" {
			h = append(h, kv)
		}
	}
	return h
}
