package filters

// Predicate decides whether a change is shown. Implementations: *expr,
// EventTypes, And.
type Predicate interface {
	Match(Input) (bool, error)
}

// EventTypes admits the listed types (ADDED, MODIFIED, DELETED).
type EventTypes map[string]bool

// Match reports whether the input's type is listed.
func (t EventTypes) Match(in Input) (bool, error) { return t[in.Type], nil }

type and []Predicate

// And matches when every predicate does (none: true). It stops at the first
// false or error.
func And(ps ...Predicate) Predicate { return and(ps) }

func (a and) Match(in Input) (bool, error) {
	for _, p := range a {
		if ok, err := p.Match(in); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}
