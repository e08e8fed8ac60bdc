package event

// The CloudEvents extensions and type names that let consumers built for
// other sources read kubefeed's events: the partitioning extension
// (partitionkey) and Knative ApiServerSource's type names. The
// extensions ApiServerSource sets (kind, apiversion, name, namespace) are
// fields of Event.

// PartitionKey is the CloudEvents partitioning extension partitionkey:
// the object's uid, or the event id when there is none (gap markers).
// Every encoding carries it, and the Kafka sink uses it as the record
// key, so that one object's events share a partition.
func (e *Event) PartitionKey() string {
	if e.UID != "" {
		return e.UID
	}
	return e.ID
}

// Knative ApiServerSource's types (mode: Resource) for the three changes.
const (
	KnativeTypeAdd    = "dev.knative.apiserver.resource.add"
	KnativeTypeUpdate = "dev.knative.apiserver.resource.update"
	KnativeTypeDelete = "dev.knative.apiserver.resource.delete"
)

// Types is a naming of the events' CloudEvents types on the wire. The
// zero value is kubefeed's own.
type Types uint8

const (
	// KubefeedTypes: io.kubefeed.resource.added, … (Event.Type as is).
	KubefeedTypes Types = iota
	// KnativeTypes: ApiServerSource's names for added, modified and
	// deleted; every other type (gap markers, snapshots) as is, since
	// ApiServerSource has no such events.
	KnativeTypes
)

// Of is the type of e in this naming.
func (t Types) Of(e *Event) string {
	if t != KnativeTypes {
		return e.Type
	}
	switch e.Type {
	case TypePrefix + "added":
		return KnativeTypeAdd
	case TypePrefix + "modified":
		return KnativeTypeUpdate
	case TypePrefix + "deleted":
		return KnativeTypeDelete
	}
	return e.Type
}
