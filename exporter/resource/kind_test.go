package resource

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

// kindDiscovery is a server's discovery: the first version listed of a
// group is its preferred version.
func kindDiscovery() *fakediscovery.FakeDiscovery {
	return &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "pods", Namespaced: true, Kind: "Pod"},
			{Name: "pods/status", Namespaced: true, Kind: "Pod"},
			{Name: "nodes", Kind: "Node"},
			{Name: "events", Namespaced: true, Kind: "Event"},
		}},
		{GroupVersion: "events.k8s.io/v1", APIResources: []metav1.APIResource{
			{Name: "events", Namespaced: true, Kind: "Event"},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "deployments", Namespaced: true, Kind: "Deployment"},
			{Name: "deployments/scale", Namespaced: true, Group: "autoscaling", Version: "v1", Kind: "Scale"},
		}},
		// example.com prefers v1; Widget is served in v1 and v1beta1,
		// Gadget only in v1beta1.
		{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
			{Name: "widgets", Namespaced: true, Kind: "Widget"},
		}},
		{GroupVersion: "example.com/v1beta1", APIResources: []metav1.APIResource{
			{Name: "widgets", Namespaced: true, Kind: "Widget"},
			{Name: "gadgets", Kind: "Gadget"},
		}},
		// beta.example.com prefers v1beta1 although v1 is served too.
		{GroupVersion: "beta.example.com/v1beta1", APIResources: []metav1.APIResource{
			{Name: "things", Namespaced: true, Kind: "Thing"},
		}},
		{GroupVersion: "beta.example.com/v1", APIResources: []metav1.APIResource{
			{Name: "things", Namespaced: true, Kind: "Thing"},
		}},
	}}}
}

// TestResolveKind: an Event's involvedObject kind is mapped to one
// resource in the server's preferred version, with its scope; a kind
// the server does not serve as a resource is an error.
func TestResolveKind(t *testing.T) {
	gvr := func(g, v, r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: g, Version: v, Resource: r}
	}
	for _, c := range []struct {
		name       string
		gk         schema.GroupKind
		want       schema.GroupVersionResource
		namespaced bool
		wantErr    bool
	}{
		{"core namespaced", schema.GroupKind{Kind: "Pod"}, gvr("", "v1", "pods"), true, false},
		{"core cluster-scoped", schema.GroupKind{Kind: "Node"}, gvr("", "v1", "nodes"), false, false},
		{"grouped", schema.GroupKind{Group: "apps", Kind: "Deployment"}, gvr("apps", "v1", "deployments"), true, false},
		{"one kind in two groups: core", schema.GroupKind{Kind: "Event"}, gvr("", "v1", "events"), true, false},
		{"one kind in two groups: events.k8s.io", schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, gvr("events.k8s.io", "v1", "events"), true, false},
		{"several versions: the preferred one", schema.GroupKind{Group: "example.com", Kind: "Widget"}, gvr("example.com", "v1", "widgets"), true, false},
		{"preferred version older than another", schema.GroupKind{Group: "beta.example.com", Kind: "Thing"}, gvr("beta.example.com", "v1beta1", "things"), true, false},
		{"served only in a version not preferred", schema.GroupKind{Group: "example.com", Kind: "Gadget"}, gvr("example.com", "v1beta1", "gadgets"), false, false},
		{"kind of a subresource only", schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, schema.GroupVersionResource{}, false, true},
		{"unknown kind", schema.GroupKind{Kind: "Nope"}, schema.GroupVersionResource{}, false, true},
		{"known kind, wrong group", schema.GroupKind{Group: "apps", Kind: "Pod"}, schema.GroupVersionResource{}, false, true},
		{"unknown group", schema.GroupKind{Group: "missing.example.com", Kind: "Widget"}, schema.GroupVersionResource{}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewDiscoveryResolver(kindDiscovery())
			got, err := r.ResolveKind(c.gk)
			if c.wantErr {
				if err == nil {
					t.Fatalf("ResolveKind(%v) = %+v, want an error", c.gk, got)
				}
				if !strings.Contains(err.Error(), "not found on the server") || !meta.IsNoMatchError(err) {
					t.Errorf("ResolveKind(%v) error = %v, want 'not found on the server' wrapping a no-match error", c.gk, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GVR != c.want || got.Namespaced != c.namespaced {
				t.Errorf("ResolveKind(%v) = %v namespaced=%v, want %v namespaced=%v", c.gk, got.GVR, got.Namespaced, c.want, c.namespaced)
			}
			if got.GVK != c.want.GroupVersion().WithKind(c.gk.Kind) {
				t.Errorf("ResolveKind(%v) GVK = %v, want %v", c.gk, got.GVK, c.want.GroupVersion().WithKind(c.gk.Kind))
			}
		})
	}
}

// TestResolveKindLate: a kind installed after the first lookup (a CRD) is
// found once discovery is reset, as the exporter does for late resources.
func TestResolveKindLate(t *testing.T) {
	dc := kindDiscovery()
	r := NewDiscoveryResolver(dc)
	gk := schema.GroupKind{Group: "late.example.com", Kind: "Late"}
	if res, err := r.ResolveKind(gk); err == nil {
		t.Fatalf("ResolveKind(%v) = %+v before the CRD exists", gk, res)
	}
	dc.Resources = append(dc.Resources, &metav1.APIResourceList{GroupVersion: "late.example.com/v1", APIResources: []metav1.APIResource{
		{Name: "lates", Namespaced: true, Kind: "Late"},
	}})
	r.Reset()
	res, err := r.ResolveKind(gk)
	if err != nil {
		t.Fatal(err)
	}
	if want := (schema.GroupVersionResource{Group: "late.example.com", Version: "v1", Resource: "lates"}); res.GVR != want || !res.Namespaced {
		t.Errorf("ResolveKind(%v) = %v namespaced=%v, want %v namespaced", gk, res.GVR, res.Namespaced, want)
	}
}
