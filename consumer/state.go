package consumer

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Entry is one object as the feed describes it.
type Entry struct {
	Key Key `json:"key"`
	// Object is the object's last state (numbers as json.Number).
	Object          map[string]any `json:"object"`
	UID             string         `json:"uid"`
	ResourceVersion string         `json:"resourceVersion"`
	// EventID is the id of the last event applied to the object.
	EventID string `json:"eventId"`
	// Truncated: the feed carried only the object's identity (an event too
	// large for its sink) and no patch could rebuild it; UID and
	// ResourceVersion are still right.
	Truncated bool `json:"truncated,omitempty"`
}

// Gap is an io.kubefeed.gap marker: kubefeed cannot rule out that it missed
// versions in Scope between From and To.
type Gap struct {
	ID      string    `json:"id"`
	Cluster string    `json:"cluster"`
	Scope   string    `json:"scope"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Reason  string    `json:"reason"`
}

// Stats counts how events were applied.
type Stats struct {
	Applied    int // events that changed the state (gap markers included)
	Duplicates int // dropped by id
	// Rebased counts modified events whose previousResourceVersion was not
	// the version held (or whose patch failed): data.object was taken.
	Rebased int
	// ForeignDeletes counts deletions of an object the consumer does not
	// hold with that uid (ignored).
	ForeignDeletes int
}

// Options of a State. The zero value is ready to use.
type Options struct {
	// OnGap, when set, is called for every new gap marker, in feed order.
	OnGap func(Gap)
	// FromSnapshot makes each completed snapshot the baseline of its
	// resource (and namespace): objects no event touched since its
	// started marker are dropped when it completes, so the State equals
	// one that started reading at that marker (snapshot.go).
	FromSnapshot bool
}

// State is the materialised feed. It is not safe for concurrent use.
type State struct {
	opts    Options
	objects map[Key]*Entry
	// shadows are other incarnations (uids) of a key than the current one,
	// not deleted yet: when the events of several incarnations interleave
	// (Kafka partitions), the newest one by creationTimestamp is current.
	shadows map[Key][]*Entry
	seen    map[string]struct{}
	gaps    []Gap
	stats   Stats
	// open are the snapshots started and not completed yet, by id and
	// scope; snapshots the completed ones.
	open      map[string]*openSnapshot
	snapshots []Snapshot
}

// New returns an empty State.
func New(o Options) *State {
	return &State{opts: o, objects: map[Key]*Entry{}, shadows: map[Key][]*Entry{}, seen: map[string]struct{}{}, open: map[string]*openSnapshot{}}
}

// Apply applies one event by the rules of the package doc. A malformed event
// is an error naming it, and leaves the State unchanged.
func (s *State) Apply(e *Event) error {
	if e == nil {
		return fmt.Errorf("nil event")
	}
	if err := e.check(); err != nil {
		return err
	}
	if _, dup := s.seen[e.ID]; dup {
		s.stats.Duplicates++
		return nil
	}
	if e.Type == TypeGap {
		if err := s.applyGap(e); err != nil {
			return err
		}
	} else if isSnapshotMarker(e.Type) {
		if err := s.applySnapshotMarker(e); err != nil {
			return err
		}
	} else if err := s.applyChange(e); err != nil {
		return err
	}
	s.seen[e.ID] = struct{}{}
	s.stats.Applied++
	return nil
}

func (s *State) applyGap(e *Event) error {
	var d struct {
		Scope  string    `json:"scope"`
		From   time.Time `json:"from"`
		To     time.Time `json:"to"`
		Reason string    `json:"reason"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("gap %s: data: %w", e.ID, err)
	}
	g := Gap{ID: e.ID, Cluster: e.Cluster, Scope: d.Scope, From: d.From, To: d.To, Reason: d.Reason}
	s.gaps = append(s.gaps, g)
	if s.opts.OnGap != nil {
		s.opts.OnGap(g)
	}
	return nil
}

func (s *State) applyChange(e *Event) error {
	var d changeData
	if err := decodeJSON(e.Data, &d); err != nil {
		return fmt.Errorf("event %s: data: %w", e.ID, err)
	}
	k := e.Key()
	if len(s.open) > 0 {
		s.touch(k, e.Change() == Snapshotted)
	}
	held := s.incarnation(k, e.UID)
	if e.Change() == Deleted {
		if held == nil {
			s.stats.ForeignDeletes++
			return nil
		}
		s.drop(k, e.UID)
		return nil
	}
	if e.Change() == Modified {
		if held != nil && d.PreviousResourceVersion != "" && held.ResourceVersion == d.PreviousResourceVersion && !held.Truncated {
			if out, err := applyPatch(held.Object, d.Patch); err == nil {
				if obj, ok := out.(map[string]any); ok {
					s.place(k, s.entry(k, e, withResourceVersion(obj, e.ResourceVersion), false))
					return nil
				}
			}
		}
		s.stats.Rebased++
	}
	if d.Object == nil {
		return fmt.Errorf("event %s: data.object is missing", e.ID)
	}
	if d.Truncated != "" && held != nil && !held.Truncated && held.ResourceVersion == e.ResourceVersion {
		// Only the identity of the version held in full (a snapshot event
		// too large for its sink, of an object rebuilt from patches): the
		// whole object stays.
		s.place(k, s.entry(k, e, held.Object, false))
		return nil
	}
	s.place(k, s.entry(k, e, d.Object, d.Truncated != ""))
	return nil
}

func (s *State) entry(k Key, e *Event, obj map[string]any, truncated bool) *Entry {
	return &Entry{Key: k, Object: obj, UID: e.UID, ResourceVersion: e.ResourceVersion, EventID: e.ID, Truncated: truncated}
}

// withResourceVersion sets metadata.resourceVersion, which patches leave
// out (the envelope carries it), on a copy: obj may be the held object.
func withResourceVersion(obj map[string]any, rv string) map[string]any {
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return obj
	}
	md = copyMap(md)
	md["resourceVersion"] = rv
	obj = copyMap(obj)
	obj["metadata"] = md
	return obj
}

// Get returns the entry of an object.
func (s *State) Get(k Key) (Entry, bool) {
	e, ok := s.objects[k]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Objects returns every entry by key (a new map; the objects are shared and
// must not be modified).
func (s *State) Objects() map[Key]Entry {
	out := make(map[Key]Entry, len(s.objects))
	for k, e := range s.objects {
		out[k] = *e
	}
	return out
}

// Keys returns the keys held, sorted.
func (s *State) Keys() []Key {
	out := make([]Key, 0, len(s.objects))
	for k := range s.objects {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Len is the number of objects held.
func (s *State) Len() int { return len(s.objects) }

// Gaps returns the gap markers applied, in feed order.
func (s *State) Gaps() []Gap { return append([]Gap(nil), s.gaps...) }

// Stats returns the counters.
func (s *State) Stats() Stats { return s.stats }
