package jsonpatch

// Equal reports whether two decoded JSON values are equal (see equal):
// numbers compare exactly, whatever Go type holds them (int64, float64,
// json.Number), so 2^53+1 is not 2^53.
func Equal(a, b any) bool { return equal(a, b) }

// equal reports whether two decoded JSON values are equal: maps and arrays
// member by member, strings, booleans and nulls by value, numbers exactly as
// numberEqual says, whatever Go type holds them.
func equal(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !equal(x, y) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case nil:
		return b == nil
	case int64:
		if bv, ok := b.(int64); ok {
			return av == bv
		}
	}
	return numberEqual(a, b)
}
