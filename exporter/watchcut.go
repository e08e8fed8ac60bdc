package exporter

// cutManagedFields removes object.metadata.managedFields from one watch
// event's JSON before it is parsed: the scopes' transform drops them
// anyway, and on Kubernetes Events they are a third of the bytes and most
// of the maps the parser would build. raw must be one valid JSON value (the
// frame reader checked it). When the member is not found as written by the
// API server (unescaped keys), raw is returned unchanged and the transform
// drops the field as before. raw is cut in place.
func cutManagedFields(raw []byte) []byte {
	s := cutScanner{b: raw}
	s.ws()
	objStart, objEnd, ok := s.member(`"object"`)
	if !ok {
		return raw
	}
	s = cutScanner{b: raw[:objEnd], i: objStart}
	mdStart, mdEnd, ok := s.member(`"metadata"`)
	if !ok {
		return raw
	}
	s = cutScanner{b: raw[:mdEnd], i: mdStart}
	from, to, ok := s.cutSpan(`"managedFields"`)
	if !ok {
		return raw
	}
	n := copy(raw[from:], raw[to:])
	return raw[:from+n]
}

// cutScanner walks JSON that is known to be valid; every step checks its
// bounds, so a surprise ends the search (ok false) rather than a panic.
type cutScanner struct {
	b []byte
	i int
}

func (s *cutScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// str skips a string at s.i (its opening quote) and returns its raw span.
func (s *cutScanner) str() (int, int, bool) {
	start := s.i
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false
	}
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return start, s.i, true
		}
	}
	return 0, 0, false
}

// value skips any value at s.i.
func (s *cutScanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // number, true, false, null
		for ; s.i < len(s.b); s.i++ {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return true
			}
		}
		return true
	}
}

// members walks the object at s.i, calling f with each member's span
// (key start, value end); f returning false stops the walk.
func (s *cutScanner) members(f func(keyStart, keyEnd, valStart, valEnd int) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	for {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '}' {
			s.i++
			return true
		}
		ks, ke, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		vs := s.i
		if !s.value() {
			return false
		}
		if !f(ks, ke, vs, s.i) {
			return true
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
		}
	}
}

// member finds the value span of key (quoted, as written) in the object at
// s.i.
func (s *cutScanner) member(key string) (int, int, bool) {
	var vs, ve int
	found := false
	s.members(func(ks, ke, v0, v1 int) bool {
		if string(s.b[ks:ke]) == key {
			vs, ve, found = v0, v1, true
			return false
		}
		return true
	})
	return vs, ve, found
}

// cutSpan returns the bytes to remove so that key's member leaves the
// object at s.i with valid JSON: the member and the comma that joined it
// to a neighbour.
func (s *cutScanner) cutSpan(key string) (int, int, bool) {
	prevEnd, from, to := -1, -1, -1
	next := -1
	s.members(func(ks, ke, _, ve int) bool {
		if from >= 0 {
			next = ks
			return false
		}
		if string(s.b[ks:ke]) == key {
			from, to = ks, ve
			return true
		}
		prevEnd = ve
		return true
	})
	switch {
	case from < 0:
		return 0, 0, false
	case prevEnd >= 0:
		return prevEnd, to, true // `,"managedFields":[…]` after a member
	case next >= 0:
		return from, next, true // `"managedFields":[…],` before a member
	default:
		return from, to, true // the only member
	}
}
