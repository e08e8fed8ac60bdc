// Package jsonpatch computes RFC 6902 JSON patches between two decoded JSON values
// (map[string]any, []any and scalars, as in unstructured.Unstructured) without
// re-marshalling them, and the list of paths a patch changes.
//
// Guarantees: applying Diff(a, b) to a yields b (checked against
// evanphx/json-patch in the tests and by FuzzDiff); ops come in a
// deterministic order (object keys sorted); add and replace always carry a
// value, null included; numbers compare exactly (see numberEqual), so integers
// beyond 2^53 are never rounded; keys are escaped per RFC 6901. Values in
// ops share memory with b, so callers must treat both as read-only. Arrays
// of equal prefix are diffed element by element, then grown with add or
// shrunk with remove from the end; the patch is correct but not always
// minimal for insertions in the middle of a list.
//
// Options.Diff leaves ignored paths out by diffing projections (see
// Options.Ignore) and never goes below opaque (redacted) paths. It consults
// the patterns only where one applies: subtrees without one are diffed as
// by Diff, and only values holding ignored paths are copied.
//
// Apply applies add, remove and replace to decoded JSON without modifying
// it: it copies the maps and arrays on the patched paths and shares the
// rest (a plan rebuilds with it the state a patch it sent led to).
package jsonpatch
