package consumer

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Snapshots in the feed (SPEC "Snapshots"): per resource, an
// io.kubefeed.snapshot.started marker, one io.kubefeed.resource.snapshot
// event per object (its whole state, like added), then
// io.kubefeed.snapshot.completed with the count. Every object of the
// resource (and namespace) that exists when the snapshot completes got an
// event between the two markers: its snapshot event, a change, or its
// deletion. So a consumer can start at a started marker, and a State
// with Options.FromSnapshot treats each completed snapshot as the new
// baseline of its resource: what no event touched since the started
// marker is dropped.

// Snapshot event and marker types.
const (
	TypeSnapshotStarted   = "io.kubefeed.snapshot.started"
	TypeSnapshotCompleted = "io.kubefeed.snapshot.completed"
	// Snapshotted is the change of an object's snapshot event
	// (io.kubefeed.resource.snapshot).
	Snapshotted = "snapshot"
)

// Snapshot is one snapshot marker pair as the feed showed it.
type Snapshot struct {
	ID        string `json:"id"`
	Group     string `json:"group,omitempty"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	// Completed: its completed marker was applied; Count is what it said.
	Completed bool `json:"completed"`
	Count     int  `json:"count"`
	// Events counts the snapshot events applied between the markers.
	Events int `json:"events"`
	// Dropped counts what FromSnapshot removed at completion: objects the
	// feed held that the snapshot did not show (a deletion the feed
	// missed, or events the consumer did not read).
	Dropped int `json:"dropped"`
}

// openSnapshot is a started snapshot: the keys of its scope touched since.
type openSnapshot struct {
	Snapshot
	touched map[Key]bool
}

func (o *openSnapshot) covers(k Key) bool {
	return k.Group == o.Group && k.Resource == o.Resource && (o.Namespace == "" || o.Namespace == k.Namespace)
}

// snapshotMarkerData is the data of the markers.
type snapshotMarkerData struct {
	ID        string `json:"id"`
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace"`
	Count     *int   `json:"count"`
}

func (s *State) applySnapshotMarker(e *Event) error {
	var d snapshotMarkerData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("snapshot marker %s: data: %w", e.ID, err)
	}
	if d.ID == "" || d.Resource == "" {
		return fmt.Errorf("snapshot marker %s: data without id or resource", e.ID)
	}
	mark := Snapshot{ID: d.ID, Group: d.Group, Resource: d.Resource, Namespace: d.Namespace}
	name := mark.ID + "|" + mark.Group + "|" + mark.Resource + "|" + mark.Namespace
	if e.Type == TypeSnapshotStarted {
		s.open[name] = &openSnapshot{Snapshot: mark, touched: map[Key]bool{}}
		return nil
	}
	o := s.open[name]
	if o == nil {
		// Its started marker was not read: nothing to say what it covers.
		mark.Completed = true
		if d.Count != nil {
			mark.Count = *d.Count
		}
		s.snapshots = append(s.snapshots, mark)
		return nil
	}
	delete(s.open, name)
	o.Completed = true
	if d.Count != nil {
		o.Count = *d.Count
	}
	if s.opts.FromSnapshot {
		for k := range s.objects {
			if o.covers(k) && !o.touched[k] {
				delete(s.objects, k)
				delete(s.shadows, k)
				o.Dropped++
			}
		}
		for k := range s.shadows {
			if o.covers(k) && !o.touched[k] {
				delete(s.shadows, k)
			}
		}
	}
	s.snapshots = append(s.snapshots, o.Snapshot)
	return nil
}

// touch notes that an event about k was applied, for the open snapshots
// covering it.
func (s *State) touch(k Key, snapshotEvent bool) {
	for _, o := range s.open {
		if o.covers(k) {
			o.touched[k] = true
			if snapshotEvent {
				o.Events++
			}
		}
	}
}

// Snapshots returns the completed snapshots applied, in feed order.
func (s *State) Snapshots() []Snapshot { return append([]Snapshot(nil), s.snapshots...) }

func isSnapshotMarker(t string) bool { return strings.HasPrefix(t, "io.kubefeed.snapshot.") }
