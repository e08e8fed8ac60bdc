// Package config loads and validates kubefeed's YAML config file
// (apiVersion kubefeed.io/v1alpha1, kind Config; see SPEC.md and
// docs/configuration.md).
//
// Load is strict: unknown keys, values of the wrong type, bad selectors and
// duplicate sink names are reported together, each with its file position
// ("config.yaml:12:5: watch[0].labelSelector: ..."). Nothing is silently
// ignored. Checks that need a cluster (does the resource exist, may we list
// and watch it) live with the resolver, not here.
//
// Zero values: Workers 0 means 4 per sink, ResyncPeriod 0 means 10m, an empty
// Events list means every event type, InitialList "" means skip, an empty
// Sinks list on a rule means every sink, Expiry "" on an events rule means
// skip (an Event's deletion, its TTL expiring, emits nothing).
package config
