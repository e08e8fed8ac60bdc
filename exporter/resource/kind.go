package resource

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// KindResolver maps a kind (as an Event's involvedObject names it) to its
// resource in the server's preferred version. Enrichment needs the
// exporter's Resolver to be one; the DiscoveryResolver is.
type KindResolver interface {
	ResolveKind(gk schema.GroupKind) (Resource, error)
}

var _ KindResolver = (*DiscoveryResolver)(nil)

// ResolveKind finds the resource of a kind through discovery.
func (r *DiscoveryResolver) ResolveKind(gk schema.GroupKind) (Resource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mapping, err := r.mapper.RESTMapping(gk)
	if err != nil {
		return Resource{}, fmt.Errorf("kind %s not found on the server: %w", gk, err)
	}
	return Resource{
		GVR:        mapping.Resource,
		GVK:        mapping.GroupVersionKind,
		Namespaced: mapping.Scope.Name() == meta.RESTScopeNameNamespace,
	}, nil
}
