package event

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestPartitionKeyIsTheUIDElseTheID(t *testing.T) {
	e := base(&ChangeData{})
	if got := e.PartitionKey(); got != "u" {
		t.Errorf("PartitionKey = %q, want the uid u", got)
	}
	gap := &Event{ID: "gap.0a1b", Type: TypeGap, Data: &GapData{}}
	if got := gap.PartitionKey(); got != "gap.0a1b" {
		t.Errorf("gap marker's PartitionKey = %q, want its id", got)
	}
}

// The extensions a Knative Trigger or a CloudEvents SQL filter reads,
// with ApiServerSource's names and values, and partitionkey, at the top
// level of the structured event.
func TestMarshalCarriesApiServerSourceExtensionsAndPartitionKey(t *testing.T) {
	e := base(&ChangeData{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}})
	e.APIVersion, e.Kind, e.Namespace, e.Name = "apps/v1", "Deployment", "shop", "web"
	b, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"kind": "Deployment", "apiversion": "apps/v1", "name": "web", "namespace": "shop", "partitionkey": "u", "type": "io.kubefeed.resource.modified"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
}

func TestKnativeTypes(t *testing.T) {
	for typ, want := range map[string]string{
		Added.Type():                     "dev.knative.apiserver.resource.add",
		Modified.Type():                  "dev.knative.apiserver.resource.update",
		Deleted.Type():                   "dev.knative.apiserver.resource.delete",
		TypeGap:                          TypeGap,
		"io.kubefeed.resource.snapshot":  "io.kubefeed.resource.snapshot",
		"io.kubefeed.snapshot.started":   "io.kubefeed.snapshot.started",
		"io.kubefeed.snapshot.completed": "io.kubefeed.snapshot.completed",
	} {
		e := &Event{Type: typ}
		if got := KnativeTypes.Of(e); got != want {
			t.Errorf("KnativeTypes.Of(%s) = %s, want %s", typ, got, want)
		}
		if got := KubefeedTypes.Of(e); got != typ {
			t.Errorf("KubefeedTypes.Of(%s) = %s", typ, got)
		}
	}
}

// AppendMarshalAs with KnativeTypes writes ApiServerSource's type and
// otherwise the bytes Marshal writes; the event keeps its own type.
func TestAppendMarshalAsKnative(t *testing.T) {
	for _, c := range []Change{Added, Modified, Deleted} {
		e := base(&ChangeData{Object: map[string]any{"kind": "ConfigMap"}})
		e.Type = c.Type()
		plain, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendMarshalAs([]byte("x"), e, KnativeTypes)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte("x"), bytes.Replace(plain, []byte(`"type":"`+c.Type()+`"`), []byte(`"type":"`+KnativeTypes.Of(e)+`"`), 1)...)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", c, got, want)
		}
		if e.Type != c.Type() {
			t.Errorf("the event's type changed to %s", e.Type)
		}
		// The pool's encoder does not keep the naming.
		if again, _ := Marshal(e); !bytes.Equal(again, plain) {
			t.Errorf("Marshal after AppendMarshalAs: %s", again)
		}
	}
}
