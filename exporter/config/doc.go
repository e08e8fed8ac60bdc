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
// Each sink's block (stdout, file, jetstream, nats, webhook, kafka,
// deadLetter) belongs to its sink package: the type with its keys, its
// SetDefaults and its Validate, which reports sinks.Problem values at paths
// relative to the block. This package assembles the blocks into Sink
// (sinks.go), applies their defaults and places their problems in the file;
// the sink packages never import it. Checks across blocks (one kind per
// sink, unique names, a dead-letter file that is not the sink's own) stay
// here.
//
// Zero values: Workers 0 means 4 per sink, ResyncPeriod 0 means 10m, an empty
// Events list means every event type, InitialList "" means skip, an empty
// Sinks list on a rule means every sink, Expiry "" on an events rule means
// skip (an Event's deletion, its TTL expiring, emits nothing).
package config
