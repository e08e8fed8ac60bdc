package consumer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// cmObj is a ConfigMap at a version, as data.object carries it.
func cmObj(name, uid, rv string, data map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv},
		"data":     data,
	}
}

// change builds an event exactly as kubefeed encodes it, and decodes it as a
// consumer reads it.
func change(t *testing.T, c event.Change, obj map[string]any, prev string, patch []jsonpatch.Op, truncated string) *Event {
	t.Helper()
	md := obj["metadata"].(map[string]any)
	uid, rv := md["uid"].(string), md["resourceVersion"].(string)
	e := &event.Event{
		SpecVersion: event.SpecVersion, ID: event.ID(uid, rv, c), Source: "kubefeed/test", Type: c.Type(),
		Subject: "/api/v1/namespaces/shop/configmaps/" + md["name"].(string), Time: time.Unix(1, 0).UTC(),
		DataContentType: event.DataContentType, Cluster: "test", APIVersion: "v1", Kind: "ConfigMap",
		Resource: "configmaps", Namespace: "shop", Name: md["name"].(string), UID: uid, ResourceVersion: rv,
		Data: &event.ChangeData{Object: obj, Patch: patch, PreviousResourceVersion: prev, Truncated: truncated},
	}
	return encodeDecode(t, e)
}

func encodeDecode(t *testing.T, e *event.Event) *Event {
	t.Helper()
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

func gapEvent(t *testing.T, id, reason string) *Event {
	t.Helper()
	return encodeDecode(t, &event.Event{
		SpecVersion: event.SpecVersion, ID: id, Source: "kubefeed/test", Type: event.TypeGap, Time: time.Unix(2, 0).UTC(),
		DataContentType: event.DataContentType, Cluster: "test", Resource: "configmaps", Namespace: "shop",
		Data: &event.GapData{Scope: "configmaps -n shop", From: time.Unix(1, 0).UTC(), To: time.Unix(2, 0).UTC(), Reason: reason},
	})
}

var cmKey = Key{Resource: "configmaps", Namespace: "shop", Name: "web"}

func TestApply(t *testing.T) {
	v1 := cmObj("web", "u1", "10", map[string]any{"a": "1"})
	v2 := cmObj("web", "u1", "11", map[string]any{"a": "2"})
	v3 := cmObj("web", "u1", "12", map[string]any{"a": "3", "b": "x"})
	other := cmObj("web", "u2", "20", map[string]any{"new": "incarnation"})
	patch12 := []jsonpatch.Op{{Op: "replace", Path: "/data/a", Value: "2"}}
	// A patch whose result differs from data.object shows which one Apply took.
	marker := []jsonpatch.Op{{Op: "replace", Path: "/data/a", Value: "from-patch"}}
	for _, tc := range []struct {
		name   string
		events func(t *testing.T) []*Event
		want   map[string]any // nil: the key is absent
		uid    string
		stats  Stats
		gaps   []string
	}{
		{
			name:   "added takes data.object",
			events: func(t *testing.T) []*Event { return []*Event{change(t, event.Added, v1, "", nil, "")} },
			want:   v1, uid: "u1", stats: Stats{Applied: 1},
		},
		{
			name: "duplicates are dropped by id",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v2, "10", patch12, ""), change(t, event.Modified, v2, "10", patch12, "")}
			},
			want: v2, uid: "u1", stats: Stats{Applied: 2, Duplicates: 1},
		},
		{
			name: "a duplicate added after a modification does not roll the object back",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v2, "10", patch12, ""), change(t, event.Added, v1, "", nil, "")}
			},
			want: v2, uid: "u1", stats: Stats{Applied: 2, Duplicates: 1},
		},
		{
			name: "modified applies the patch when previousResourceVersion is the version held",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v2, "10", marker, "")}
			},
			want: cmObj("web", "u1", "11", map[string]any{"a": "from-patch"}), uid: "u1", stats: Stats{Applied: 2},
		},
		{
			name: "modified takes data.object when previousResourceVersion is another version",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v3, "11", marker, "")}
			},
			want: v3, uid: "u1", stats: Stats{Applied: 2, Rebased: 1},
		},
		{
			name: "out of order: a patch from an older version than held takes data.object",
			events: func(t *testing.T) []*Event {
				return []*Event{
					change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v2, "10", patch12, ""),
					change(t, event.Modified, v3, "10", marker, ""), // merged from 10 after a lost ack of 11
				}
			},
			want: v3, uid: "u1", stats: Stats{Applied: 3, Rebased: 1},
		},
		{
			name:   "modified of an object never held takes data.object",
			events: func(t *testing.T) []*Event { return []*Event{change(t, event.Modified, v2, "10", marker, "")} },
			want:   v2, uid: "u1", stats: Stats{Applied: 1, Rebased: 1},
		},
		{
			name: "modified of another incarnation takes data.object",
			events: func(t *testing.T) []*Event {
				o := cmObj("web", "u2", "10", map[string]any{"a": "other"})
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, o, "10", marker, "")}
			},
			want: cmObj("web", "u2", "10", map[string]any{"a": "other"}), uid: "u2", stats: Stats{Applied: 2, Rebased: 1},
		},
		{
			name: "a patch that does not apply falls back to data.object",
			events: func(t *testing.T) []*Event {
				bad := []jsonpatch.Op{{Op: "remove", Path: "/data/missing"}}
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, v2, "10", bad, "")}
			},
			want: v2, uid: "u1", stats: Stats{Applied: 2, Rebased: 1},
		},
		{
			name: "deleted removes the object with its uid",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Deleted, v2, "", nil, "")}
			},
			want: nil, stats: Stats{Applied: 2},
		},
		{
			name: "the deletion of another uid is ignored (old incarnation after a restart)",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, other, "", nil, ""), change(t, event.Deleted, v1, "", nil, "")}
			},
			want: other, uid: "u2", stats: Stats{Applied: 2, ForeignDeletes: 1},
		},
		{
			name:   "the deletion of an object never held is ignored",
			events: func(t *testing.T) []*Event { return []*Event{change(t, event.Deleted, v1, "", nil, "")} },
			want:   nil, stats: Stats{Applied: 1, ForeignDeletes: 1},
		},
		{
			name: "delete then re-create with a new uid",
			events: func(t *testing.T) []*Event {
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Deleted, v1, "", nil, ""), change(t, event.Added, other, "", nil, "")}
			},
			want: other, uid: "u2", stats: Stats{Applied: 3},
		},
		{
			name: "gap markers are surfaced and change no object",
			events: func(t *testing.T) []*Event {
				return []*Event{gapEvent(t, "gap.1", "restart"), change(t, event.Added, v1, "", nil, ""), gapEvent(t, "gap.2", "relist"), gapEvent(t, "gap.1", "restart")}
			},
			want: v1, uid: "u1", stats: Stats{Applied: 3, Duplicates: 1}, gaps: []string{"restart", "relist"},
		},
		{
			name: "a truncated event whose patch applies is rebuilt in full",
			events: func(t *testing.T) []*Event {
				ident := cmObj("web", "u1", "11", nil)
				delete(ident, "data")
				return []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, ident, "10", patch12, "object")}
			},
			want: v2, uid: "u1", stats: Stats{Applied: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var surfaced []string
			s := New(Options{OnGap: func(g Gap) { surfaced = append(surfaced, g.Reason) }})
			for _, e := range tc.events(t) {
				if err := s.Apply(e); err != nil {
					t.Fatalf("apply %s: %v", e.ID, err)
				}
			}
			got, ok := s.Get(cmKey)
			switch {
			case tc.want == nil && ok:
				t.Fatalf("held %s, want nothing", mustJSON(got.Object))
			case tc.want != nil && !ok:
				t.Fatalf("held nothing, want %s", mustJSON(tc.want))
			case tc.want != nil:
				if mustJSON(got.Object) != mustJSON(tc.want) {
					t.Errorf("object\n got %s\nwant %s", mustJSON(got.Object), mustJSON(tc.want))
				}
				rv := tc.want["metadata"].(map[string]any)["resourceVersion"]
				if got.UID != tc.uid || got.ResourceVersion != rv || !strings.HasPrefix(got.EventID, tc.uid+"."+got.ResourceVersion+".") {
					t.Errorf("entry uid=%s rv=%s id=%s, want uid %s rv %s", got.UID, got.ResourceVersion, got.EventID, tc.uid, rv)
				}
			}
			if s.Stats() != tc.stats {
				t.Errorf("stats %+v, want %+v", s.Stats(), tc.stats)
			}
			var reasons []string
			for _, g := range s.Gaps() {
				reasons = append(reasons, g.Reason)
			}
			if !reflect.DeepEqual(reasons, tc.gaps) || !reflect.DeepEqual(surfaced, tc.gaps) {
				t.Errorf("gaps %v, OnGap saw %v, want %v", reasons, surfaced, tc.gaps)
			}
		})
	}
}

func TestApplyKeepsBigIntegersNullsAndEscapedKeys(t *testing.T) {
	v1 := cmObj("web", "u1", "10", map[string]any{"a": "1"})
	v1["spec"] = map[string]any{"big": json.Number("9007199254740993"), "a/b~c": "old", "gone": "x"}
	v2 := cmObj("web", "u1", "11", map[string]any{"a": "1"})
	v2["spec"] = map[string]any{"big": json.Number("9007199254740995"), "a/b~c": "new", "gone": nil}
	patch := []jsonpatch.Op{
		{Op: "replace", Path: "/spec/a~1b~0c", Value: "new"},
		{Op: "replace", Path: "/spec/big", Value: json.Number("9007199254740995")},
		{Op: "replace", Path: "/spec/gone"}, // kubefeed omits a null value
	}
	marker := cmObj("web", "u1", "11", map[string]any{"taken": "object"}) // shows it was not taken
	s := New(Options{})
	for _, e := range []*Event{change(t, event.Added, v1, "", nil, ""), change(t, event.Modified, marker, "10", patch, "")} {
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Get(cmKey)
	want := `{"apiVersion":"v1","data":{"a":"1"},"kind":"ConfigMap","metadata":{"name":"web","namespace":"shop","resourceVersion":"11","uid":"u1"},"spec":{"a/b~c":"new","big":9007199254740995,"gone":null}}`
	if s := mustJSON(got.Object); s != want {
		t.Errorf("patched\n got %s\nwant %s", s, want)
	}
	// The held object of version 10 was not modified by the patch.
	if s.Stats().Rebased != 0 {
		t.Errorf("rebased %d", s.Stats().Rebased)
	}
}

func TestApplyRejectsMalformedEvents(t *testing.T) {
	good := change(t, event.Added, cmObj("web", "u1", "10", nil), "", nil, "")
	for _, tc := range []struct {
		name string
		mod  func(e *Event)
		want string
	}{
		{"no id", func(e *Event) { e.ID = "" }, "event without id"},
		{"unknown type", func(e *Event) { e.Type = "io.kubefeed.resource.renamed" }, `unknown type "io.kubefeed.resource.renamed"`},
		{"no uid", func(e *Event) { e.UID = "" }, "missing uid"},
		{"data not an object", func(e *Event) { e.Data = json.RawMessage(`[1]`) }, "data:"},
		{"no data.object", func(e *Event) { e.Data = json.RawMessage(`{"recovered":false}`) }, "data.object is missing"},
		{"null data", func(e *Event) { e.Data = json.RawMessage(`null`) }, "data.object is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := *good
			tc.mod(&e)
			s := New(Options{})
			err := s.Apply(&e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if s.Len() != 0 || s.Stats() != (Stats{}) {
				t.Errorf("a rejected event changed the state: %d objects, %+v", s.Len(), s.Stats())
			}
			// A rejected id is not remembered: the good event still applies.
			if err := s.Apply(good); err != nil || s.Len() != 1 {
				t.Errorf("good event after a rejected one: %v, %d objects", err, s.Len())
			}
		})
	}
	if _, err := Decode([]byte(`{"id":`)); err == nil {
		t.Error("Decode accepted truncated JSON")
	}
}

func TestDecodeBinary(t *testing.T) {
	obj := cmObj("web", "u1", "10", map[string]any{"n": json.Number("12345678901234567890")})
	h := map[string]string{
		"ce-specversion": "1.0", "ce-id": "u1.10.added", "ce-type": "io.kubefeed.resource.added", "ce-source": "kubefeed/test",
		"ce-time": "2026-01-02T03:04:05.123Z", "ce-apiversion": "v1", "ce-resource": "configmaps", "ce-namespace": "shop",
		"ce-name": "web", "ce-uid": "u1", "ce-resourceversion": "10",
	}
	body := []byte(`{"object":` + mustJSON(obj) + `,"recovered":false}`)
	e, err := DecodeBinary(func(n string) string { return h[n] }, body)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	if err := s.Apply(e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(cmKey); mustJSON(got.Object) != mustJSON(obj) {
		t.Errorf("got %s", mustJSON(got.Object))
	}
	h["ce-time"] = "yesterday"
	if _, err := DecodeBinary(func(n string) string { return h[n] }, body); err == nil || !strings.Contains(err.Error(), "ce-time") {
		t.Errorf("bad ce-time: %v", err)
	}
}

func TestConstantsMatchTheProducer(t *testing.T) {
	if TypeGap != event.TypeGap || TypePrefix != event.TypePrefix || Added != string(event.Added) || Modified != string(event.Modified) || Deleted != string(event.Deleted) {
		t.Fatal("consumer constants differ from package event")
	}
}

func TestKeyOfGroupedResource(t *testing.T) {
	e := &Event{APIVersion: "apps/v1", Resource: "deployments", Namespace: "shop", Name: "web"}
	if k := e.Key(); k != (Key{Group: "apps", Resource: "deployments", Namespace: "shop", Name: "web"}) || k.String() != "deployments.apps/shop/web" {
		t.Errorf("key %+v %s", k, k)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestApplyObjectNearOneMiB(t *testing.T) {
	big := strings.Repeat("x", 1000*1000)
	v1 := cmObj("web", "u1", "10", map[string]any{"blob": big, "n": "1"})
	v2 := cmObj("web", "u1", "11", map[string]any{"blob": big, "n": "2"})
	s := New(Options{})
	for _, e := range []*Event{
		change(t, event.Added, v1, "", nil, ""),
		change(t, event.Modified, v2, "10", []jsonpatch.Op{{Op: "replace", Path: "/data/n", Value: "2"}}, ""),
	} {
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Get(cmKey)
	if data := got.Object["data"].(map[string]any); data["n"] != "2" || data["blob"] != big || s.Stats().Rebased != 0 {
		t.Errorf("n=%v, blob of %d bytes, stats %+v", data["n"], len(data["blob"].(string)), s.Stats())
	}
}

func TestApplyInterleavedIncarnations(t *testing.T) {
	at := func(o map[string]any, ts string) map[string]any {
		o["metadata"].(map[string]any)["creationTimestamp"] = ts
		return o
	}
	oldV1 := at(cmObj("web", "old", "10", map[string]any{"v": "old"}), "2026-01-01T10:00:00Z")
	oldV2 := at(cmObj("web", "old", "11", map[string]any{"v": "old2"}), "2026-01-01T10:00:00Z")
	newV1 := at(cmObj("web", "new", "20", map[string]any{"v": "new"}), "2026-01-01T11:00:00Z")
	newV2 := at(cmObj("web", "new", "21", map[string]any{"v": "new2"}), "2026-01-01T11:00:00Z")
	for _, tc := range []struct {
		name   string
		events func(t *testing.T) []*Event
		want   map[string]any
	}{
		{"the old incarnation's events arrive after the new one's", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, newV1, "", nil, ""), change(t, event.Added, oldV1, "", nil, ""),
				change(t, event.Modified, oldV2, "10", []jsonpatch.Op{{Op: "replace", Path: "/data/v", Value: "old2"}}, ""),
				change(t, event.Deleted, oldV2, "", nil, ""),
			}
		}, newV1},
		{"the new one changes while the old one is shadowed", func(t *testing.T) []*Event {
			return []*Event{
				change(t, event.Added, newV1, "", nil, ""), change(t, event.Added, oldV1, "", nil, ""),
				change(t, event.Modified, newV2, "20", []jsonpatch.Op{{Op: "replace", Path: "/data/v", Value: "new2"}}, ""),
				change(t, event.Deleted, oldV1, "", nil, ""),
			}
		}, newV2},
		{"in order: the old deleted, then the new added", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Deleted, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, "")}
		}, newV1},
		{"after a restart: the new added before the old deleted", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, oldV1, "", nil, ""), change(t, event.Added, newV1, "", nil, ""), change(t, event.Deleted, oldV1, "", nil, "")}
		}, newV1},
		{"the new one deleted before the old one's deletion arrived: the old one shows until then", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, newV1, "", nil, ""), change(t, event.Added, oldV1, "", nil, ""), change(t, event.Deleted, newV1, "", nil, "")}
		}, oldV1},
		{"both deleted, in any order", func(t *testing.T) []*Event {
			return []*Event{change(t, event.Added, newV1, "", nil, ""), change(t, event.Added, oldV1, "", nil, ""), change(t, event.Deleted, newV1, "", nil, ""), change(t, event.Deleted, oldV1, "", nil, "")}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			for _, e := range tc.events(t) {
				if err := s.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := s.Get(cmKey)
			if tc.want == nil {
				if ok || s.Len() != 0 || len(s.shadows) != 0 {
					t.Errorf("held %s (%d shadowed keys), want nothing", mustJSON(got.Object), len(s.shadows))
				}
				return
			}
			if !ok || mustJSON(got.Object) != mustJSON(tc.want) {
				t.Errorf("held %s, want %s", mustJSON(got.Object), mustJSON(tc.want))
			}
		})
	}
}

// A feed written with types: knative applies as kubefeed's own types do.
func TestKnativeTypeNamesApplyAsTheChangesTheyName(t *testing.T) {
	s := New(Options{})
	add := change(t, event.Added, cmObj("a", "ua", "1", nil), "", nil, "")
	add.Type = event.KnativeTypeAdd
	del := change(t, event.Deleted, cmObj("a", "ua", "2", nil), "", nil, "")
	del.Type = event.KnativeTypeDelete
	if err := s.Apply(add); err != nil || s.Len() != 1 {
		t.Fatalf("add: %v, %v", err, s.Keys())
	}
	if err := s.Apply(del); err != nil || s.Len() != 0 {
		t.Fatalf("delete: %v, %v", err, s.Keys())
	}
}
