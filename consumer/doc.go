// Package consumer materialises the state a kubefeed feed describes: the
// objects of the watched scopes, as a consumer that applies the events in
// order holds them. It is what `kubefeed verify` compares with a LIST, and
// it is importable by any Go program that reads the feed.
//
// # Rules
//
// State.Apply applies one CloudEvent at a time, by the rules the README gives
// consumers:
//
//   - Duplicates are dropped by event id (ids are deterministic:
//     <uid>.<resourceVersion>.<change>). The State remembers every id it
//     applied, one string per event.
//   - added takes data.object.
//   - modified applies data.patch (RFC 6902) to the object held when that
//     object has the event's uid and data.previousResourceVersion equals the
//     resourceVersion held; otherwise (the consumer holds another version,
//     another incarnation or nothing) it takes data.object. A patch that does
//     not apply also falls back to data.object.
//   - deleted removes the object only when the object held has the event's
//     uid: after a kubefeed restart, the deletion of an old incarnation can
//     arrive after the new incarnation's added.
//   - Incarnations: when the events of an older incarnation (another uid,
//     an earlier metadata.creationTimestamp) arrive after a newer
//     incarnation's, as they can across Kafka partitions, the newer one
//     stays current and the older one is kept aside until its deletion.
//     Without both timestamps, the incarnation applied last is current.
//     Every incarnation added or modified and never deleted is held: Get
//     and Objects return the current one of each key, Incarnations and
//     AllIncarnations all of them, so that an old incarnation whose
//     deletion the feed lost (kubefeed was down without a checkpoint while
//     the name was deleted and re-created) stays visible under a newer one.
//   - io.kubefeed.gap markers change no object; they are kept (State.Gaps)
//     and passed to Options.OnGap, so a caller can tell "kubefeed was not
//     looking" from "nothing happened".
//
// Objects are keyed by Key (group, resource, namespace, name). Each Entry
// carries the object, its uid, its resourceVersion and the id of the last
// event applied to it. Numbers are decoded as json.Number, so integers
// beyond 2^53 keep every digit.
//
// An event kubefeed had to shrink (data.truncated) carries only the object's
// identity in data.object: when its patch cannot be applied, the entry keeps
// that identity and its new resourceVersion, and is marked Truncated.
//
// # Guarantees
//
// Given kubefeed's delivery promise (per object, events arrive in
// resourceVersion order, at least once), applying a sink's events in order
// ends with exactly the state a LIST of the same scopes returns, for objects
// whose changes the feed carries (see the README on initialList and
// filters). Apply never panics on bad input: a malformed event is an error
// naming the event, and the State is left unchanged.
//
// # Reading a JetStream stream
//
// ReadJetStream reads a stream with an ordered consumer, from the start or
// from a start time or sequence, and stops at the last message the stream
// held (for its filter) when the read began, so it terminates however fast
// kubefeed publishes. On a JetStream cluster, a fetch that finds no
// responder (the consumer it just created is not yet known where the
// client is connected) is tried again. Both CloudEvents modes are understood: structured (the
// event is the body) and binary (ce-* headers, data as body).
//
// # Reading a Kafka topic
//
// ReadKafka reads every partition of the topics (franz-go), from the log
// start or from where an earlier read ended, up to the high watermarks the
// partitions had when the read began, so it terminates too. Partitions
// interleave; kubefeed keys records by uid, so one object's events keep
// their order, and incarnations across partitions are sorted out by the
// rules above. Both modes of the CloudEvents Kafka binding are understood
// (structured; binary with ce_* headers); null values (tombstones) change
// nothing. For files, decode each line with Decode and call Apply.
package consumer
