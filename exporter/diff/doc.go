// Package diff computes RFC 6902 JSON patches between two decoded JSON values
// (map[string]any, []any and scalars, as in unstructured.Unstructured) without
// re-marshalling them, and the list of paths a patch changes.
//
// Guarantees: applying Diff(a, b) to a yields b (checked against
// evanphx/json-patch in the tests); ops come in a deterministic order (object
// keys sorted); values in ops share memory with b, so callers must treat both
// as read-only. Arrays of equal prefix are diffed element by element, then
// grown with add or shrunk with remove from the end; the patch is correct but
// not always minimal for insertions in the middle of a list.
package diff
