package consumer

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

func snapshotMarker(t *testing.T, typ, id string, count *int) *Event {
	t.Helper()
	which := "started"
	if typ == event.TypeSnapshotCompleted {
		which = "completed"
	}
	return encodeDecode(t, &event.Event{
		SpecVersion: event.SpecVersion, ID: event.SnapshotMarkerID(id, "", "configmaps", "", which), Source: "kubefeed/test", Type: typ,
		Time: time.Unix(3, 0).UTC(), DataContentType: event.DataContentType, Cluster: "test", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps",
		Data: &event.SnapshotData{ID: id, Resource: "configmaps", Count: count},
	})
}

func snapshotOf(t *testing.T, obj map[string]any, id string) *Event {
	t.Helper()
	e := change(t, event.Added, obj, "", nil, "")
	md := obj["metadata"].(map[string]any)
	e.ID = event.SnapshotID(md["uid"].(string), md["resourceVersion"].(string), id)
	e.Type = event.Snapshot.Type()
	return e
}

// A consumer that starts at snapshot.started ends where one that read the
// whole feed with FromSnapshot does; the whole feed without it keeps an
// object whose deletion it never got, which the snapshot's completion drops.
func TestStateFromSnapshotEqualsAConsumerStartingAtItsStartedMarker(t *testing.T) {
	three := 3
	feed := []*Event{
		change(t, event.Added, cmObj("a", "ua", "1", map[string]any{"v": "1"}), "", nil, ""),
		change(t, event.Added, cmObj("b", "ub", "2", map[string]any{"v": "1"}), "", nil, ""),
		change(t, event.Added, cmObj("gone", "ug", "3", nil), "", nil, ""), // its deletion is lost
		snapshotMarker(t, event.TypeSnapshotStarted, "s1", nil),
		change(t, event.Modified, cmObj("b", "ub", "5", map[string]any{"v": "2"}), "2", nil, ""), // before b's snapshot event
		snapshotOf(t, cmObj("a", "ua", "1", map[string]any{"v": "1"}), "s1"),
		snapshotOf(t, cmObj("b", "ub", "5", map[string]any{"v": "2"}), "s1"),
		change(t, event.Added, cmObj("c", "uc", "6", nil), "", nil, ""), // created during the snapshot
		snapshotOf(t, cmObj("c", "uc", "6", nil), "s1"),
		snapshotMarker(t, event.TypeSnapshotCompleted, "s1", &three),
		change(t, event.Modified, cmObj("a", "ua", "7", map[string]any{"v": "3"}), "1", nil, ""),
	}
	late := New(Options{})
	for _, e := range feed[3:] {
		if err := late.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	whole := New(Options{FromSnapshot: true})
	plain := New(Options{})
	for _, e := range feed {
		if err := whole.Apply(e); err != nil {
			t.Fatal(err)
		}
		if err := plain.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(late.Objects(), whole.Objects()) {
		t.Fatalf("from snapshot %v\nlate consumer %v", whole.Keys(), late.Keys())
	}
	if late.Len() != 3 || plain.Len() != 4 {
		t.Fatalf("late %v, plain %v", late.Keys(), plain.Keys())
	}
	snaps := whole.Snapshots()
	if len(snaps) != 1 || !snaps[0].Completed || snaps[0].Count != 3 || snaps[0].Events != 3 || snaps[0].Dropped != 1 {
		t.Fatalf("snapshots %+v", snaps)
	}
}

// A snapshot of one namespace drops nothing outside it; a completed
// marker whose started one was not read drops nothing.
func TestStateFromSnapshotKeepsWhatTheSnapshotDidNotCover(t *testing.T) {
	one := 1
	other := cmObj("x", "ux", "1", nil)
	other["metadata"].(map[string]any)["namespace"] = "other"
	started := snapshotMarker(t, event.TypeSnapshotStarted, "s", nil)
	completed := snapshotMarker(t, event.TypeSnapshotCompleted, "s", &one)
	for _, m := range []*Event{started, completed} {
		m.Namespace = "shop"
		m.Data = []byte(`{"id":"s","group":"","resource":"configmaps","namespace":"shop","count":1}`)
	}
	feed := []*Event{
		encodeDecodeNS(t, other),
		change(t, event.Added, cmObj("kept", "uk", "2", nil), "", nil, ""),
		completed, // no started read: nothing dropped
		started,
		snapshotOf(t, cmObj("kept", "uk", "2", nil), "s"),
	}
	s := New(Options{FromSnapshot: true})
	for _, e := range feed {
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	// completed again (a new id so it is not a duplicate)
	again := *completed
	again.ID += ".again"
	if err := s.Apply(&again); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("held %v", s.Keys())
	}
}

func encodeDecodeNS(t *testing.T, obj map[string]any) *Event {
	t.Helper()
	e := change(t, event.Added, obj, "", nil, "")
	e.Namespace = "other"
	return e
}

func TestSnapshotMarkerWithoutResourceIsAnError(t *testing.T) {
	m := snapshotMarker(t, event.TypeSnapshotStarted, "s", nil)
	m.Data = []byte(`{"id":"s"}`)
	if err := New(Options{}).Apply(m); err == nil {
		t.Fatal("no error")
	}
}

// A snapshot event too large for its sink carries only the object's
// identity (data.truncated): a consumer that holds that very version in
// full (rebuilt from patches) keeps it, and the next patch still applies.
func TestTruncatedSnapshotEventKeepsTheVersionHeldInFull(t *testing.T) {
	big := strings.Repeat("x", 1000*1000)
	v1 := cmObj("web", "u1", "10", map[string]any{"blob": big, "n": "1"})
	v2 := cmObj("web", "u1", "11", map[string]any{"blob": big, "n": "2"})
	v3 := cmObj("web", "u1", "12", map[string]any{"blob": big, "n": "3"})
	ident := func(obj map[string]any) map[string]any {
		md := obj["metadata"].(map[string]any)
		return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{
			"name": md["name"], "namespace": md["namespace"], "uid": md["uid"], "resourceVersion": md["resourceVersion"]}}
	}
	one := 1
	snap := snapshotOf(t, ident(v2), "s")
	snap.Data = []byte(strings.Replace(string(snap.Data), `{"object"`, `{"truncated":"object","object"`, 1))
	feed := []*Event{
		change(t, event.Added, v1, "", nil, ""),
		change(t, event.Modified, ident(v2), "10", []jsonpatch.Op{{Op: "replace", Path: "/data/n", Value: "2"}}, "object"),
		snapshotMarker(t, event.TypeSnapshotStarted, "s", nil),
		snap,
		snapshotMarker(t, event.TypeSnapshotCompleted, "s", &one),
	}
	for _, from := range []bool{false, true} {
		s := New(Options{FromSnapshot: from})
		for _, e := range feed {
			if err := s.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := s.Get(cmKey)
		if !ok || got.Truncated || got.ResourceVersion != "11" || got.Object["data"] == nil || got.Object["data"].(map[string]any)["blob"] != big {
			t.Fatalf("FromSnapshot %v: held %v truncated=%v rv %s, data %v", from, ok, got.Truncated, got.ResourceVersion, got.Object["data"] != nil)
		}
		if err := s.Apply(change(t, event.Modified, ident(v3), "11", []jsonpatch.Op{{Op: "replace", Path: "/data/n", Value: "3"}}, "object")); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Get(cmKey)
		if got.Truncated || got.Object["data"].(map[string]any)["n"] != "3" || s.Stats().Rebased != 0 {
			t.Fatalf("FromSnapshot %v: after the next patch truncated=%v, stats %+v", from, got.Truncated, s.Stats())
		}
	}
}
