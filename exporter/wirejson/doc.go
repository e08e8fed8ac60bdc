// Package wirejson decodes a Kubernetes watch stream (application/json:
// concatenated {"type":…,"object":{…}} values) in one pass, straight into
// the map[string]any an unstructured informer caches.
//
// Guarantees:
//   - Values are exactly those sigs.k8s.io/json's
//     UnmarshalCaseSensitivePreserveInts gives for the same event decoded
//     into struct{Type string; Object map[string]any}: objects as
//     map[string]any, arrays as []any (empty ones non-nil), strings
//     unescaped as encoding/json does (invalid UTF-8 and lone surrogates
//     become U+FFFD), integer literals that fit as int64 and every other
//     number as float64, the last of duplicate keys, and duplicate "object"
//     members merged into one map.
//   - With Options.DropManagedFields, object.metadata.managedFields is
//     checked but never built (nothing else named managedFields is touched).
//   - Malformed JSON, a nesting deeper than encoding/json allows (10000), an
//     event larger than Options.MaxEventBytes and a number out of float64
//     range are errors naming the stream offset; a stream that ends between
//     events is io.EOF, one that ends inside an event io.ErrUnexpectedEOF,
//     and read errors are returned unchanged. Nothing panics or loops.
//   - One Decoder reads one stream and is not safe for concurrent use. It
//     reads through its own buffer, which holds the event being decoded (so
//     Raw can return it); short keys and values are shared between events.
package wirejson
