package kafka

import (
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
)

// A template renders an event's topic once per cluster, apiVersion and
// resource: later events of the same get the same topic (or error), events
// that differ in any of them their own, gap markers (no apiVersion) theirs.
func TestTopicRenderedOncePerResource(t *testing.T) {
	tmpl, err := compileTopic("k.{cluster}.{group}.{resource}", "home")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("r", 300)
	cases := []struct {
		e       *event.Event
		want    string
		wantErr bool
	}{
		{&event.Event{Cluster: "a", APIVersion: "v1", Resource: "pods"}, "k.a.core.pods", false},
		{&event.Event{Cluster: "a", APIVersion: "apps/v1", Resource: "deployments"}, "k.a.apps.deployments", false},
		{&event.Event{Cluster: "a", APIVersion: "apps/v1", Resource: "pods"}, "k.a.apps.pods", false},
		{&event.Event{Cluster: "b", APIVersion: "v1", Resource: "pods"}, "k.b.core.pods", false},
		{&event.Event{APIVersion: "v1", Resource: "pods"}, "k.home.core.pods", false},
		{&event.Event{Cluster: "a", APIVersion: "v1", Resource: "a/b"}, "k.a.core.a_b", false},
		{&event.Event{Cluster: "a", Resource: "widgets", Type: event.TypeGap, Data: &event.GapData{Scope: "widgets.example.com"}}, "k.a.example.com.widgets", false},
		{&event.Event{Cluster: "a", Resource: "widgets", Type: event.TypeGap, Data: &event.GapData{Scope: "widgets"}}, "k.a.core.widgets", false},
		{&event.Event{Cluster: "a", APIVersion: "v1", Resource: long}, "", true},
	}
	for round := 0; round < 3; round++ {
		for _, c := range cases {
			got, err := tmpl.render(c.e)
			if (err != nil) != c.wantErr || got != c.want && !c.wantErr {
				t.Errorf("round %d: %+v rendered %q, %v; want %q (error: %v)", round, c.e, got, err, c.want, c.wantErr)
			}
		}
	}
	if n := len(tmpl.rendered); n != 7 {
		t.Errorf("%d topics kept rendered, want the 7 of events with an apiVersion", n)
	}
}

// BenchmarkTopicRender renders a templated topic as the sink does for each
// event; /expand is the rendering itself, which render does once per
// resource.
func BenchmarkTopicRender(b *testing.B) {
	tmpl, err := compileTopic("kubefeed.{cluster}.{group}.{resource}", "c")
	if err != nil {
		b.Fatal(err)
	}
	e := &event.Event{Cluster: "c", APIVersion: "apps/v1", Resource: "deployments"}
	for name, f := range map[string]func(*event.Event) (string, error){"render": tmpl.render, "expand": tmpl.expand} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
