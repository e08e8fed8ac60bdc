package sinks_test

import (
	"encoding/json"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// attributes are the CloudEvents attributes of an encoding: the
// top-level strings of a structured body, the ce-* headers of a binary
// one.
func attributes(t *testing.T, enc sinks.Encoded) map[string]string {
	t.Helper()
	out := map[string]string{}
	if len(enc.Headers) > 0 {
		for _, h := range enc.Headers {
			if len(h[0]) > 3 && h[0][:3] == "ce-" {
				out[h[0][3:]] = h[1]
			}
		}
		return out
	}
	var m map[string]any
	if err := json.Unmarshal(enc.Body, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// Every mode carries the partitionkey extension (the uid, else the id)
// and ApiServerSource's kind, apiversion, name and namespace; types
// knative names the three changes as ApiServerSource does and leaves
// other types and the event itself alone.
func TestEncodeAsTypesAndExtensions(t *testing.T) {
	gap := &event.Event{SpecVersion: event.SpecVersion, ID: "gap.1", Source: "kubefeed/c", Type: event.TypeGap,
		DataContentType: event.DataContentType, Cluster: "c", APIVersion: "v1", Kind: "ConfigMap", Data: &event.GapData{Scope: "configmaps"}}
	cases := []struct {
		e             *event.Event
		kubefeed, kn  string
		partitionKey  string
		wantNamespace bool
	}{
		{withType(sinktest.Event(1, 1), event.Added), event.Added.Type(), event.KnativeTypeAdd, "", true},
		{withType(sinktest.Event(2, 2), event.Modified), event.Modified.Type(), event.KnativeTypeUpdate, "", true},
		{withType(sinktest.Event(3, 3), event.Deleted), event.Deleted.Type(), event.KnativeTypeDelete, "", true},
		{gap, event.TypeGap, event.TypeGap, "gap.1", false},
	}
	for _, c := range cases {
		if c.partitionKey == "" {
			c.partitionKey = c.e.UID
		}
		for _, mode := range []string{sinks.ModeStructured, sinks.ModeBinary} {
			for types, want := range map[string]string{"": c.kubefeed, sinks.TypesKubefeed: c.kubefeed, sinks.TypesKnative: c.kn} {
				enc, err := sinks.EncodeAs(nil, c.e, sinks.Format{Mode: mode, Types: types}, 0)
				if err != nil {
					t.Fatal(err)
				}
				a := attributes(t, enc)
				if a["type"] != want {
					t.Errorf("%s %s types %q: type %q, want %q", c.e.ID, mode, types, a["type"], want)
				}
				if a["partitionkey"] != c.partitionKey || c.partitionKey == "" {
					t.Errorf("%s %s: partitionkey %q, want %q", c.e.ID, mode, a["partitionkey"], c.partitionKey)
				}
				if a["kind"] != c.e.Kind || a["apiversion"] != c.e.APIVersion || a["name"] != c.e.Name || a["namespace"] != c.e.Namespace {
					t.Errorf("%s %s: kind %q apiversion %q name %q namespace %q, want the event's", c.e.ID, mode, a["kind"], a["apiversion"], a["name"], a["namespace"])
				}
				if c.wantNamespace && (a["kind"] == "" || a["name"] == "" || a["namespace"] == "") {
					t.Errorf("%s %s: empty extensions %v", c.e.ID, mode, a)
				}
				if c.e.Type != c.kubefeed || enc.Event != c.e {
					t.Errorf("%s %s: the event was changed or copied (type %s)", c.e.ID, mode, c.e.Type)
				}
			}
		}
	}
}

// Shrinking keeps the naming and the key.
func TestEncodeAsShrunkKeepsTypesAndKey(t *testing.T) {
	e := sinktest.Event(4, 1)
	e.Data.(*event.ChangeData).OldObject = map[string]any{"x": string(make([]byte, 4000))}
	enc, err := sinks.EncodeAs(make([]byte, 0, 64), e, sinks.Format{Types: sinks.TypesKnative}, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Event == e {
		t.Fatal("not shrunk")
	}
	if a := attributes(t, enc); a["type"] != event.KnativeTypeUpdate || a["partitionkey"] != e.UID {
		t.Errorf("shrunk: type %q partitionkey %q", a["type"], a["partitionkey"])
	}
}

func TestValidateTypes(t *testing.T) {
	for _, ok := range []string{"", "kubefeed", "knative"} {
		if ps := sinks.ValidateTypes(ok); len(ps) != 0 {
			t.Errorf("%q: %v", ok, ps)
		}
	}
	ps := sinks.ValidateTypes("Knative")
	if len(ps) != 1 || ps[0].Msg != `must be kubefeed or knative, got "Knative"` {
		t.Errorf("Knative: %v", ps)
	}
}

func withType(e *event.Event, c event.Change) *event.Event {
	e.Type = c.Type()
	e.ID = event.ID(e.UID, e.ResourceVersion, c)
	return e
}
