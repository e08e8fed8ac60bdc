package exporter

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// Gap markers carry the scope's apiVersion and kind, so NATS subjects put
// them under the resource's group (apps), not "core".
func TestGapMarkerCarriesAPIVersion(t *testing.T) {
	src := newFakeSource(0)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "deployments.apps"}}), harnessOpts{src: src})
	h.waitReady()
	d := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"namespace": "a", "name": "web"}}}
	src.apply(deployRes.GVR, d, true)
	src.expire(deployRes.GVR)
	evs := h.sinks["rec"].waitFor(t, "gap and added", func(e []*event.Event) bool { return len(e) == 2 })
	g := evs[0]
	if g.Type != event.TypeGap || g.APIVersion != "apps/v1" || g.Kind != "Deployment" {
		t.Fatalf("gap marker apiversion %q kind %q type %s, want apps/v1 Deployment gap", g.APIVersion, g.Kind, g.Type)
	}
}
