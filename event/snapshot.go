package event

// Snapshots on demand: a snapshot of a resource (optionally one namespace)
// is an io.kubefeed.snapshot.started marker, one io.kubefeed.resource.snapshot
// event per object (ChangeData with the object's state, through the
// object's own queue), then an io.kubefeed.snapshot.completed marker with
// the count. The markers are per resource, as gap markers are per scope, so
// they are routed (subject, topic) like the resource's events.

// Snapshot is the change of an object's snapshot event:
// io.kubefeed.resource.snapshot.
const Snapshot Change = "snapshot"

// The types of the markers around a snapshot's events.
const (
	TypeSnapshotPrefix    = "io.kubefeed.snapshot."
	TypeSnapshotStarted   = TypeSnapshotPrefix + "started"
	TypeSnapshotCompleted = TypeSnapshotPrefix + "completed"
)

// SnapshotData is the data of the snapshot markers.
type SnapshotData struct {
	// ID names the snapshot (the request's); every event of it carries it.
	ID string `json:"id"`
	// Group and Resource are the resource the snapshot covers, Namespace
	// the namespace ("" for every namespace the feed watches).
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	// Count, on completed, is the number of snapshot events sent between
	// the two markers.
	Count *int `json:"count,omitempty"`
}

// SnapshotID is the id of an object's snapshot event: its version and the
// snapshot, so that the same unchanged object in two snapshots is not a
// duplicate, and the same snapshot sent again after a restart is.
func SnapshotID(uid, resourceVersion, snapshot string) string {
	return uid + "." + resourceVersion + ".snapshot." + snapshot
}

// SnapshotMarkerID is the id of a snapshot's started or completed marker
// for one resource ("group/resource", or "resource" in the core group) and
// namespace.
func SnapshotMarkerID(snapshot, group, resource, namespace, which string) string {
	gr := resource
	if group != "" {
		gr = resource + "." + group
	}
	if namespace != "" {
		gr += "." + namespace
	}
	return "snapshot." + snapshot + "." + gr + "." + which
}

// IsSnapshotMarker reports whether t is the type of a snapshot marker.
func IsSnapshotMarker(t string) bool {
	return len(t) > len(TypeSnapshotPrefix) && t[:len(TypeSnapshotPrefix)] == TypeSnapshotPrefix
}
