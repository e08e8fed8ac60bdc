package plan

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/internal/fixture"
)

// Only Kubernetes Events (core/v1 and events.k8s.io) are Events, and a
// rule shows nothing for their deletion (an expiry) unless it says
// expiry: emit; the deletion of any other object is always shown.
func TestSkipsExpiry(t *testing.T) {
	core := resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Event"}, Namespaced: true}
	events := resource.Resource{GVR: schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"}, Namespaced: true}
	other := resource.Resource{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Event"}, Namespaced: true}
	for _, c := range []struct {
		res    resource.Resource
		expiry string
		want   bool
	}{
		{core, "", true},
		{events, "", true},
		{core, config.ExpiryEmit, false},
		{events, config.ExpiryEmit, false},
		{other, "", false},
		{fixture.ConfigMaps, "", false},
		{fixture.Pods, config.ExpiryEmit, false},
	} {
		r := &Rule{Config: config.Watch{Expiry: c.expiry}}
		if got := r.SkipsExpiry(c.res); got != c.want {
			t.Errorf("%s/%s expiry %q: SkipsExpiry = %v, want %v", c.res.GVK.Group, c.res.GVK.Kind, c.expiry, got, c.want)
		}
		if got := isEvents(c.res); got != (c.res != other && (c.res == core || c.res == events)) {
			t.Errorf("%s/%s: isEvents = %v", c.res.GVK.Group, c.res.GVK.Kind, got)
		}
	}
}
