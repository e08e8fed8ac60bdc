// Package exporter is kubefeed's pipeline: it resolves the resources a config
// names, runs one shared informer per distinct scope, turns every
// notification into an object key on each routed sink's queue, and lets that
// sink's workers compare the object's current state with the last state
// delivered to the sink, emitting added, modified (with an RFC 6902 patch),
// deleted, or nothing.
//
// Guarantees:
//   - Handlers do constant-time work and no I/O: they enqueue keys (and seed
//     the delivered state of objects present at start with initialList skip).
//   - Per object and sink, events are sent in resourceVersion order: the
//     workqueue never hands one key to two workers at once.
//   - A failing sink holds back only itself: every sink has its own queue,
//     workers and delivered state. Retryable errors requeue the key with
//     exponential backoff; permanent errors are logged, counted and dropped
//     for that sink only.
//   - Resyncs and unchanged relists emit nothing; a backlog merges several
//     versions of one object into one modified event whose
//     previousResourceVersion is the version it starts from.
//   - A UID change under the same name is a deleted event then an added one.
//   - Kubernetes Events are objects like any other, except that their
//     deletion (TTL expiry) emits nothing unless the rule says expiry: emit,
//     and that enriching rules add the involved object's metadata from a
//     metadata-only informer, never a GET per Event (events.go, enrich.go).
//
// What to send for one key is decided by package plan (pure); the
// delivered state per sink lives behind state.Store, the seam where
// restart checkpoints plug in.
package exporter
