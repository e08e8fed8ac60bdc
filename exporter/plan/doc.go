// Package plan is the pure part of kubefeed's pipeline: what to send a
// sink for one object key, given what the sink last got (a state.Record),
// what the informers hold now (Current) and the final state of a deleted
// object (Tombstone). It compiles the config's watch rules (Rule:
// selection, filters, ignored and redacted paths), decides the changes
// (added, modified, deleted, or nothing), renders each as a CloudEvent
// with its RFC 6902 patch, and says which delivered state to record
// (Outcome) and, for a checkpointed sink, which record to write ahead of
// the send (Ahead).
//
// Planning does no I/O and reads no clock (the time an event carries
// comes from an Observer); only compiling the rules reads the config's
// redaction key file. The same inputs give the same bytes,
// which testdata/plan.golden holds for a sweep of cases.
package plan
