package plan

import (
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// Kubernetes Events (core/v1 events and events.k8s.io/v1 events) are
// objects like any other for the pipeline: a new Event is added, a count
// bump (core: count and lastTimestamp; events.k8s.io: series.count and
// series.lastObservedTime) is a modified event whose patch holds just those
// fields (resourceVersion is in the envelope, managedFields never enter the
// cache). Two things differ:
//
//   - Expiry. Events are deleted by the API server when their TTL expires
//     (--event-ttl, 1h by default); nothing else deletes them in practice,
//     so kubefeed takes every deletion of an Event for an expiry. It emits
//     nothing for it unless the rule says expiry: emit. The sink's
//     delivered record is forgotten either way, so nothing is kept for
//     expired Events.
//   - Enrichment. With enrich: involvedObject the event carries the labels,
//     annotations and owner references of the object the Event is about,
//     read from a metadata-only informer per involved kind (enrich.go).

// isEvents reports whether res is a Kubernetes Events resource.
func isEvents(res resource.Resource) bool {
	return res.GVK.Kind == "Event" && (res.GVK.Group == "" || res.GVK.Group == "events.k8s.io")
}

// SkipsExpiry reports whether the rule shows nothing for the deletion of an
// object of res: an Event expiring, unless the rule says expiry: emit.
func (r *Rule) SkipsExpiry(res resource.Resource) bool {
	return isEvents(res) && r.Config.Expiry != config.ExpiryEmit
}
