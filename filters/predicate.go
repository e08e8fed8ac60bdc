package filters

// Predicate decides whether a change is shown. Implementations: *Expr,
// EventTypes, And, Or, Not.
type Predicate interface {
	Match(Input) (bool, error)
}

// EventTypes admits the listed types (ADDED, MODIFIED, DELETED).
type EventTypes map[string]bool

// Match reports whether the input's type is listed.
func (t EventTypes) Match(in Input) (bool, error) { return t[in.Type], nil }

type and []Predicate
type or []Predicate
type not struct{ p Predicate }

// And matches when every predicate does (none: true). It stops at the first
// false or error.
func And(ps ...Predicate) Predicate { return and(ps) }

// Or matches when any predicate does (none: false). Errors count as false
// unless no predicate matches, then the first error is returned.
func Or(ps ...Predicate) Predicate { return or(ps) }

// Not inverts a predicate; an error stays an error (and false).
func Not(p Predicate) Predicate { return not{p} }

func (a and) Match(in Input) (bool, error) {
	for _, p := range a {
		if ok, err := p.Match(in); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (o or) Match(in Input) (bool, error) {
	var first error
	for _, p := range o {
		ok, err := p.Match(in)
		if ok {
			return true, nil
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return false, first
}

func (n not) Match(in Input) (bool, error) {
	ok, err := n.p.Match(in)
	if err != nil {
		return false, err
	}
	return !ok, nil
}
