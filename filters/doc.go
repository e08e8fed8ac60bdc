// Package filters holds what decides whether and how a change is shown:
// JSON-pointer path patterns (ignorePaths, redactPaths) and, composed with
// And, predicates over changes. It depends on no sink.
package filters
