// Package sinks defines what a sink is and how its errors are classified.
// Each sink lives in its own package below this one; the exporter core never
// imports them (cmd/ wires them in).
//
// Contract for a Sink:
//   - Send delivers the events in order, all of them or an error; it returns
//     only once the destination acknowledged them (at-least-once). It may be
//     called concurrently by several workers, each with events of different
//     objects; events of one object never overlap.
//   - Errors are retryable unless wrapped with Permanent; RetryAfter asks the
//     caller to wait at least a given time. Sinks never retry on their own:
//     the caller's rate-limited queue is the one retry mechanism.
//   - Close flushes and releases resources; Send is not called after it.
//   - A sink may also implement AsyncSink (async.go): a window of
//     publishes in flight across objects, each acknowledged through a
//     callback. sinktest checks that contract for the sinks that have it.
//     Window (window.go) is the one in-flight window such sinks (and Group)
//     bound it with: slots taken all or nothing, one acquirer at a time,
//     waits ended by ctx or Close, Release never blocking.
//
// Shared by every sink: SafeURL, the one way to show a URL in logs and
// errors (scheme, host and port only); OpenAppend, which creates files 0600
// in directories 0700; ErrDeadLettered, wrapped into the permanent error of
// a send whose rejected events were kept by sinks/deadletter.
//
// Config (config.go, tls.go): each sink package owns its block of the
// config file (its Config type, SetDefaults and Validate); the blocks share
// Duration, TLS (and TLSConfig, which builds a client TLS config from it),
// ValidateMode, and Problem, which a Validate returns at a path relative to
// its block. exporter/config assembles the blocks and places their
// problems in the file; no sink imports it.
package sinks
