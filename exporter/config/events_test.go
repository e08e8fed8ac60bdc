package config_test

import (
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

func TestIsEventsResource(t *testing.T) {
	for name, want := range map[string]bool{
		"events": true, "ev": true, "Events": true, " event ": true, "v1/events": true,
		"events.events.k8s.io": true, "events.v1.events.k8s.io": true, "events.k8s.io/v1/events": true,
		"pods": false, "events.example.com": false, "example.com/v1/events": false, "eventsx": false,
		"deployments.apps": false, "": false, "v1/pods": false, "events.v1": false,
	} {
		if got := config.IsEventsResource(name); got != want {
			t.Errorf("IsEventsResource(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestEventsOptions(t *testing.T) {
	base := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\n"
	sinks := "sinks:\n  - name: out\n    stdout: {}\n"
	c, err := config.Parse("f.yaml", []byte(base+"watch:\n  - resource: events\n    enrich: involvedObject\n  - resource: events.events.k8s.io\n    expiry: emit\n  - resource: pods\n"+sinks))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Watch; w[0].Expiry != config.ExpirySkip || w[0].Enrich != config.EnrichInvolvedObject || w[1].Expiry != config.ExpiryEmit || w[2].Expiry != "" {
		t.Errorf("expiry/enrich = %q/%q, %q, %q", w[0].Expiry, w[0].Enrich, w[1].Expiry, w[2].Expiry)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"expiry on pods", "watch:\n  - resource: pods\n    expiry: emit\n", []string{`f.yaml:5:13: watch[0].expiry: only applies to Kubernetes Events`}},
		{"enrich on configmaps", "watch:\n  - resource: configmaps\n    enrich: involvedObject\n", []string{`f.yaml:5:13: watch[0].enrich: only applies to Kubernetes Events`}},
		{"bad expiry", "watch:\n  - resource: events\n    expiry: keep\n", []string{`f.yaml:5:13: watch[0].expiry: must be skip or emit, got "keep"`}},
		{"bad enrich", "watch:\n  - resource: ev\n    enrich: owner\n", []string{`f.yaml:5:13: watch[0].enrich: must be involvedObject, got "owner"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(base+tc.yaml+sinks))
			wantProblems(t, err, tc.want)
		})
	}
}
