package jsonpatch

// Matcher names a set of paths by their unescaped reference tokens (array
// indices in decimal). filters.Patterns implements it.
type Matcher interface {
	// MatchTokens reports whether the path, or a path above it, is named.
	MatchTokens(tokens []string) bool
	// BelowTokens reports whether some path strictly below may be named.
	BelowTokens(tokens []string) bool
}

// Options shape a diff. The zero value diffs everything.
type Options struct {
	// Ignore names paths the patch leaves out. The patch is the diff of the
	// projections of both values: ignored members removed, maps left empty
	// only by that removal removed as well, and ignored array elements
	// replaced by null (arrays keep their length; an array element left
	// empty by the removal stays an empty map). So a change that touches
	// only ignored paths yields nothing, and a patch applies to a value that
	// differs from the old one only at ignored paths.
	Ignore Matcher
	// Opaque names paths the patch never goes below: a change inside is one
	// replace of the whole value (redacted paths, whose redacted form has no
	// inner structure to address).
	Opaque Matcher
}
