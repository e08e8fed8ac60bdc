// Package state holds what kubefeed remembers per sink: the Key that names
// an object, the Record of what was last delivered for it, and the Store
// that keeps those records (in memory here; restart checkpoints, package
// checkpoint, implement it over a file or a JetStream KV bucket).
//
// It imports nothing of kubefeed but the redaction and patch types a
// record carries, so that the checkpoints and the pipeline share it
// without importing each other.
package state
