package config

import (
	"regexp"
	"strings"
)

// Expiry modes of a rule on Kubernetes Events: what the deletion of an
// Event (its TTL expiring) shows.
const (
	// ExpirySkip (the default) emits nothing when an Event is deleted; its
	// delivered state is forgotten all the same.
	ExpirySkip = "skip"
	// ExpiryEmit reports the deletion as a deleted event, like any object.
	ExpiryEmit = "emit"
)

// EnrichInvolvedObject adds the labels, annotations and owner references of
// the object an Event is about (involvedObject, or regarding for
// events.k8s.io) as data.involvedObject, read from a metadata-only cache.
const EnrichInvolvedObject = "involvedObject"

var versionRE = regexp.MustCompile(`^v[0-9]+((alpha|beta)[0-9]+)?$`)

// isEventsResource reports whether a resource name as the config writes it
// names Kubernetes Events: events, ev, event (core/v1), v1/events,
// events.events.k8s.io, events.v1.events.k8s.io, events.k8s.io/v1/events.
// The check is by name; the resolved resource is authoritative at run time.
func isEventsResource(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "events", "ev", "event":
		return true
	}
	if strings.Contains(n, "/") {
		p := strings.Split(n, "/")
		switch len(p) {
		case 2:
			return p[1] == "events"
		case 3:
			return p[2] == "events" && p[0] == "events.k8s.io"
		}
		return false
	}
	res, group, ok := strings.Cut(n, ".")
	if !ok || (res != "events" && res != "event" && res != "ev") {
		return false
	}
	if v, rest, ok := strings.Cut(group, "."); ok && versionRE.MatchString(v) {
		group = rest
	}
	return group == "events.k8s.io"
}

// eventsOptions checks the rule fields that only mean something for
// Kubernetes Events.
func (v *validator) eventsOptions(path string, w *Watch) {
	events := isEventsResource(w.Resource)
	switch w.Expiry {
	case "":
	case ExpirySkip, ExpiryEmit:
		if !events {
			v.at(path+".expiry", "only applies to Kubernetes Events (resource events or events.events.k8s.io), not %q", w.Resource)
		}
	default:
		v.at(path+".expiry", "must be skip or emit, got %q", w.Expiry)
	}
	switch w.Enrich {
	case "":
	case EnrichInvolvedObject:
		if !events {
			v.at(path+".enrich", "only applies to Kubernetes Events (resource events or events.events.k8s.io), not %q", w.Resource)
		}
	default:
		v.at(path+".enrich", "must be %s, got %q", EnrichInvolvedObject, w.Enrich)
	}
}
