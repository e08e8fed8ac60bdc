package consumer

import (
	"sort"
	"time"
)

// Incarnations returns every incarnation held at k, added or modified and
// never deleted: the current one (the one Get returns) first, then those
// shadowed by it, by uid. More than one means the feed never carried the
// deletion of all but one of them (yet): a LIST holds at most one object
// per name, so a consumer that compares with the cluster (kubefeed verify)
// must compare each of them, not only the current one.
func (s *State) Incarnations(k Key) []Entry {
	cur := s.objects[k]
	if cur == nil {
		return nil
	}
	out := make([]Entry, 0, 1+len(s.shadows[k]))
	out = append(out, *cur)
	return append(out, s.shadowed(k)...)
}

// AllIncarnations returns every incarnation held, by key (as Keys orders
// them), each key's as Incarnations returns them. The objects are shared
// and must not be modified.
func (s *State) AllIncarnations() []Entry {
	out := make([]Entry, 0, len(s.objects))
	for _, k := range s.Keys() {
		out = append(out, s.Incarnations(k)...)
	}
	return out
}

// shadowed returns the incarnations held at k other than the current one,
// by uid.
func (s *State) shadowed(k Key) []Entry {
	sh := s.shadows[k]
	out := make([]Entry, len(sh))
	for i, e := range sh {
		out[i] = *e
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// incarnation returns the entry of uid at k, current or shadowed.
func (s *State) incarnation(k Key, uid string) *Entry {
	if e := s.objects[k]; e != nil && e.UID == uid {
		return e
	}
	for _, e := range s.shadows[k] {
		if e.UID == uid {
			return e
		}
	}
	return nil
}

// place stores an incarnation's new state. Another incarnation held at k
// stays current only when it was created later: the events of an older
// incarnation arrived late (another Kafka partition), and that one waits,
// shadowed, for its own deletion. Otherwise the new incarnation replaces
// the one held, as the rules say.
func (s *State) place(k Key, next *Entry) {
	cur := s.objects[k]
	switch {
	case cur == nil || cur.UID == next.UID:
		s.objects[k] = next
	case newer(cur, next):
		s.setShadow(k, next)
	default:
		// The displaced incarnation may be the live one whose events came
		// first on another partition (same second): it waits, shadowed,
		// for its own deletion.
		s.setShadow(k, cur)
		s.removeShadow(k, next.UID)
		s.objects[k] = next
	}
}

// drop removes a deleted incarnation; the newest shadowed one, if any,
// becomes current.
func (s *State) drop(k Key, uid string) {
	if cur := s.objects[k]; cur == nil || cur.UID != uid {
		s.removeShadow(k, uid)
		return
	}
	delete(s.objects, k)
	sh := s.shadows[k]
	if len(sh) == 0 {
		return
	}
	best := sh[0]
	for _, e := range sh[1:] {
		if !newer(best, e) {
			best = e
		}
	}
	s.removeShadow(k, best.UID)
	s.objects[k] = best
}

func (s *State) setShadow(k Key, e *Entry) {
	s.removeShadow(k, e.UID)
	s.shadows[k] = append(s.shadows[k], e)
}

func (s *State) removeShadow(k Key, uid string) {
	sh := s.shadows[k]
	for i, e := range sh {
		if e.UID == uid {
			sh = append(sh[:i:i], sh[i+1:]...)
			break
		}
	}
	if len(sh) == 0 {
		delete(s.shadows, k)
		return
	}
	s.shadows[k] = sh
}

// newer reports whether a was created strictly after b. Without both
// creation timestamps (a truncated event) it cannot tell, and says no: the
// incarnation applied last wins.
func newer(a, b *Entry) bool {
	ta, tb := created(a), created(b)
	return !ta.IsZero() && !tb.IsZero() && ta.After(tb)
}

func created(e *Entry) time.Time {
	md, _ := e.Object["metadata"].(map[string]any)
	s, _ := md["creationTimestamp"].(string)
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
