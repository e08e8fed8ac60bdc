// Package event holds kubefeed's CloudEvents 1.0 envelope as plain structs:
// shared by every other package, importing nothing of kubefeed but the
// jsonpatch operations its patch carries. It has no behaviour beyond naming and
// encoding; see SPEC.md for the contract.
package event

import (
	"time"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Change is what happened to an object.
type Change string

// Changes.
const (
	Added    Change = "added"
	Modified Change = "modified"
	Deleted  Change = "deleted"
)

// CloudEvents attributes kubefeed uses.
const (
	SpecVersion     = "1.0"
	TypePrefix      = "io.kubefeed.resource."
	TypeGap         = "io.kubefeed.gap"
	DataContentType = "application/json"
)

// Type is the CloudEvents type of a change, io.kubefeed.resource.<change>
// (a constant for the three changes: no string is built per event).
func (c Change) Type() string {
	switch c {
	case Added:
		return TypePrefix + "added"
	case Modified:
		return TypePrefix + "modified"
	case Deleted:
		return TypePrefix + "deleted"
	case Snapshot:
		return TypePrefix + "snapshot"
	}
	return TypePrefix + string(c)
}

// ID is the deterministic event id <uid>.<resourceVersion>.<change>, so that
// consumers and JetStream (Nats-Msg-Id) can drop duplicates.
func ID(uid, resourceVersion string, c Change) string {
	return uid + "." + resourceVersion + "." + string(c)
}

// Event is one CloudEvent in structured mode.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Cluster         string    `json:"cluster"`
	APIVersion      string    `json:"apiversion,omitempty"`
	Kind            string    `json:"kind,omitempty"`
	Resource        string    `json:"resource,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name,omitempty"`
	UID             string    `json:"uid,omitempty"`
	ResourceVersion string    `json:"resourceversion,omitempty"`
	// ChangedBy is the CloudEvents extension changedby: the field managers
	// of Data.ChangedBy, comma-separated (rules with attribution: managers).
	// Not authcontext: a field manager is a name the client chose, not an
	// authenticated principal.
	ChangedBy string `json:"changedby,omitempty"`
	// Data is *ChangeData for resource events and *GapData for gap markers.
	Data any `json:"data"`
}

// ChangeData is the data of io.kubefeed.resource.* events.
type ChangeData struct {
	// Object is the new state; for deleted, the last known state.
	Object map[string]any `json:"object"`
	// OldObject is the previous delivered state, only when a rule asks.
	OldObject map[string]any `json:"oldObject,omitempty"`
	// Patch turns the previous delivered state into Object (modified only).
	Patch        []jsonpatch.Op `json:"patch,omitempty"`
	ChangedPaths []string       `json:"changedPaths,omitempty"`
	// PreviousResourceVersion is the version the patch starts from.
	PreviousResourceVersion string `json:"previousResourceVersion,omitempty"`
	// Recovered is true when the change was seen through a relist or a
	// restart rather than a live watch event.
	Recovered bool `json:"recovered"`
	// Truncated is set when the event was too large for its sink: Object
	// then holds only apiVersion, kind and identifying metadata.
	Truncated string `json:"truncated,omitempty"`
	// InvolvedObject is the metadata of the object a Kubernetes Event is
	// about, when the rule enriches Events and the object was in the
	// metadata cache.
	InvolvedObject *InvolvedObject `json:"involvedObject,omitempty"`
	// ChangedBy names the field managers that made the change, from the
	// object's managedFields (rules with attribution: managers).
	ChangedBy []FieldManager `json:"changedBy,omitempty"`
}

// FieldManager is one writer of an object, as its managedFields name it:
// the manager (kubectl-client-side-apply, helm, a controller), the
// operation (Apply or Update), the subresource (status, scale; "" for
// the object itself) and the time of its last write.
type FieldManager struct {
	Manager     string `json:"manager"`
	Operation   string `json:"operation"`
	Subresource string `json:"subresource,omitempty"`
	Time        string `json:"time,omitempty"`
}

// Managers is the changedby extension of fms: the manager names, in
// order, comma-separated.
func Managers(fms []FieldManager) string {
	var b []byte
	for i, f := range fms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.Manager...)
	}
	return string(b)
}

// InvolvedObject is what an enriched Kubernetes Event carries of the
// object it is about (involvedObject, or regarding for events.k8s.io/v1),
// read from a metadata-only cache. The last-applied-configuration
// annotation is never included.
type InvolvedObject struct {
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	OwnerReferences []OwnerReference  `json:"ownerReferences,omitempty"`
}

// OwnerReference is metav1.OwnerReference as JSON, without importing it
// into this leaf package.
type OwnerReference struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	Name               string `json:"name"`
	UID                string `json:"uid"`
	Controller         *bool  `json:"controller,omitempty"`
	BlockOwnerDeletion *bool  `json:"blockOwnerDeletion,omitempty"`
}

// GapData is the data of io.kubefeed.gap events: kubefeed cannot rule out
// that it missed versions in Scope between From and To.
type GapData struct {
	Scope  string    `json:"scope"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Reason string    `json:"reason"`
}

// Change returns the change an event reports, or "" for a gap marker.
func (e *Event) Change() Change {
	if len(e.Type) > len(TypePrefix) && e.Type[:len(TypePrefix)] == TypePrefix {
		return Change(e.Type[len(TypePrefix):])
	}
	return ""
}

// Marshal encodes the event in structured mode (one JSON object), without
// escaping <, > and & (values such as "<redacted>" stay readable). The
// bytes are those encoding/json writes, with the partitionkey extension
// (PartitionKey) before data, produced without reflection for decoded
// JSON values (encode.go).
func Marshal(e *Event) ([]byte, error) {
	return MarshalAs(e, KubefeedTypes)
}

// MarshalAs is Marshal with the type named by types. The bytes are
// encoded in a pooled buffer and copied once, at their size: a caller
// that keeps them (a record awaiting its ack) holds no spare capacity,
// and nothing is reallocated while the event is written.
func MarshalAs(e *Event, types Types) ([]byte, error) {
	b, err := appendEvent(e, types)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// MarshalData encodes the event's data (binary mode's body) as Marshal
// writes the data member: the bytes encoding/json writes for it, without
// escaping <, > and &.
func MarshalData(e *Event) ([]byte, error) {
	b, err := appendData(e.Data)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// AppendMarshal appends what Marshal writes to dst, so that a caller
// that reuses its buffers encodes without allocating. On error, dst is
// returned as it was.
func AppendMarshal(dst []byte, e *Event) ([]byte, error) {
	return AppendMarshalAs(dst, e, KubefeedTypes)
}

// AppendMarshalAs is AppendMarshal with the type named by types.
func AppendMarshalAs(dst []byte, e *Event, types Types) ([]byte, error) {
	enc := encoders.Get().(*encoder)
	own := enc.b
	enc.b = dst
	enc.types = types
	err := enc.event(e)
	out := enc.b
	enc.b = own
	enc.keys = enc.keys[:0]
	encoders.Put(enc)
	if err != nil {
		return dst, err
	}
	return out, nil
}
