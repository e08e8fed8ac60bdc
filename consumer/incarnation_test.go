package consumer

import (
	"reflect"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// recoveredChange is change with data.recovered set, as kubefeed sends what
// it saw through a relist or a restart.
func recoveredChange(t *testing.T, c event.Change, obj map[string]any) *Event {
	t.Helper()
	e := producerEvent("test", c, obj, "", nil)
	e.Data.(*event.ChangeData).Recovered = true
	return encodeDecode(t, e)
}

// TestIncarnationsHoldEveryUndeletedUID: every incarnation (uid) of a name
// that was added or modified and never deleted is held and listed, also
// when a newer incarnation holds the name now; its deletion, however late
// (a recovered deletion after a restart, after a gap marker), retires it.
func TestIncarnationsHoldEveryUndeletedUID(t *testing.T) {
	at := func(o map[string]any, ts string) map[string]any {
		o["metadata"].(map[string]any)["creationTimestamp"] = ts
		return o
	}
	oldV1 := at(cmObj("web", "old", "10", map[string]any{"v": "old"}), "2026-01-01T10:00:00Z")
	oldV2 := at(cmObj("web", "old", "11", map[string]any{"v": "old2"}), "2026-01-01T10:00:00Z")
	newV1 := at(cmObj("web", "new", "20", map[string]any{"v": "new"}), "2026-01-01T11:00:00Z")
	newV2 := at(cmObj("web", "new", "21", map[string]any{"v": "new2"}), "2026-01-01T11:00:00Z")
	untimed := cmObj("web", "u3", "30", map[string]any{"v": "untimed"}) // no creationTimestamp
	other := cmObj("db", "o1", "40", nil)
	otherKey := Key{Resource: "configmaps", Namespace: "shop", Name: "db"}
	for _, tc := range []struct {
		name    string
		events  func(t *testing.T) []*Event
		current string   // uid Get returns at cmKey; "" for none
		want    []string // uid@rv of Incarnations(cmKey): the current one first
	}{
		{"a lost deletion: the name re-created, the new one modified", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, oldV1, "", nil, ""),
				change(t, event.Modified, newV2, "20", []jsonpatch.Op{{Op: "replace", Path: "/data/v", Value: "new2"}}, ""),
			}
		}, "new", []string{"new@21", "old@10"}},
		{"a lost deletion: the new one added", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, "")}
		}, "new", []string{"new@20", "old@10"}},
		{"a lost deletion behind a gap marker", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), gapEvent(t, "gap.1", "restart"), recoveredChange(t, event.Added, newV1)}
		}, "new", []string{"new@20", "old@10"}},
		{"a lost deletion without creation timestamps: the one applied last is current", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, untimed, "", nil, "")}
		}, "u3", []string{"u3@30", "old@10"}},
		{"a shadowed incarnation keeps its own changes", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, newV1, "", nil, ""), change(t, event.Added, oldV1, "", nil, ""),
				change(t, event.Modified, oldV2, "10", []jsonpatch.Op{{Op: "replace", Path: "/data/v", Value: "old2"}}, ""),
			}
		}, "new", []string{"new@20", "old@11"}},
		{"a uid change in order: the old deleted, then the new added", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Deleted, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, "")}
		}, "new", []string{"new@20"}},
		{"after a restart: a recovered deletion of the old one after the new one's added retires it", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, oldV1, "", nil, ""), gapEvent(t, "gap.1", "restart"),
				recoveredChange(t, event.Added, newV1), recoveredChange(t, event.Deleted, oldV1),
			}
		}, "new", []string{"new@20"}},
		{"a gap marker alone retires nothing", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, ""), gapEvent(t, "gap.1", "restart")}
		}, "new", []string{"new@20", "old@10"}},
		{"the new one deleted: the old one, never deleted, is current again", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, ""), change(t, event.Deleted, newV1, "", nil, "")}
		}, "old", []string{"old@10"}},
		{"both deleted", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, ""),
				change(t, event.Deleted, oldV1, "", nil, ""), change(t, event.Deleted, newV1, "", nil, ""),
			}
		}, "", nil},
		{"a deletion of a uid never held retires nothing", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, newV1, "", nil, ""), change(t, event.Deleted, oldV1, "", nil, "")}
		}, "new", []string{"new@20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			for _, e := range append(tc.events(t), change(t, event.Added, other, "", nil, "")) {
				if err := s.Apply(e); err != nil {
					t.Fatalf("apply %s: %v", e.ID, err)
				}
			}
			if cur, ok := s.Get(cmKey); cur.UID != tc.current || ok != (tc.current != "") {
				t.Errorf("Get: uid %q (held %v), want %q", cur.UID, ok, tc.current)
			}
			var got []string
			for _, e := range s.Incarnations(cmKey) {
				if e.Key != cmKey {
					t.Errorf("incarnation %s has key %s", e.UID, e.Key)
				}
				got = append(got, e.UID+"@"+e.ResourceVersion)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Incarnations: %v, want %v", got, tc.want)
			}
			// AllIncarnations: every key's, sorted by key (db before web).
			var all []string
			for _, e := range s.AllIncarnations() {
				all = append(all, e.Key.Name+":"+e.UID+"@"+e.ResourceVersion)
			}
			wantAll := []string{"db:o1@40"}
			for _, w := range tc.want {
				wantAll = append(wantAll, "web:"+w)
			}
			if !reflect.DeepEqual(all, wantAll) {
				t.Errorf("AllIncarnations: %v, want %v", all, wantAll)
			}
			if n := len(s.Incarnations(otherKey)); n != 1 {
				t.Errorf("Incarnations of db: %d, want 1", n)
			}
		})
	}
}

// TestSameSecondIncarnationsAcrossPartitionsKeepTheNewOne: an object
// deleted and re-created within one second (kubectl replace --force) has
// two incarnations with the same creationTimestamp. On Kafka their events
// sit on two partitions (the key is the uid), so a consumer can read the
// new one's added before the old one's added and deleted. The new
// incarnation is the one the cluster holds, and the State holds it at the
// end.
func TestSameSecondIncarnationsAcrossPartitionsKeepTheNewOne(t *testing.T) {
	at := func(o map[string]any, ts string) map[string]any {
		o["metadata"].(map[string]any)["creationTimestamp"] = ts
		return o
	}
	oldV1 := at(cmObj("web", "old", "10", map[string]any{"v": "old"}), "2026-01-01T10:00:00Z")
	newV1 := at(cmObj("web", "new", "20", map[string]any{"v": "new"}), "2026-01-01T10:00:00Z")
	s := New(Options{})
	for _, e := range []*Event{
		change(t, event.Added, newV1, "", nil, ""), // partition 1
		change(t, event.Added, oldV1, "", nil, ""), // partition 0, read later
		change(t, event.Deleted, oldV1, "", nil, ""),
	} {
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := s.Get(cmKey)
	if !ok || got.UID != "new" {
		t.Fatalf("held %v (uid %q), want the new incarnation (uid new): it was never deleted", ok, got.UID)
	}
}
