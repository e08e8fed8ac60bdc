package resource

import (
	"fmt"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
)

// Resource is a resolved resource: what to watch and how to name it.
type Resource struct {
	GVR        schema.GroupVersionResource
	GVK        schema.GroupVersionKind
	Namespaced bool
}

// APIVersion is group/version, or version for the core group.
func (r Resource) APIVersion() string { return r.GVK.GroupVersion().String() }

// IsAPIVersion reports whether s is APIVersion(), without building it.
func (r Resource) IsAPIVersion(s string) bool {
	g, v := r.GVK.Group, r.GVK.Version
	if g == "" {
		return s == v
	}
	return len(s) == len(g)+1+len(v) && s[:len(g)] == g && s[len(g)] == '/' && s[len(g)+1:] == v
}

// Path is the object's API path, used as the event subject.
// It is built in one allocation: it is made for every event.
func (r Resource) Path(namespace, name string) string {
	n := len("/apis/") + len(r.GVR.Group) + 1 + len(r.GVR.Version) + len("/namespaces/") + len(namespace) + 1 + len(r.GVR.Resource) + 1 + len(name)
	var b strings.Builder
	b.Grow(n)
	if r.GVR.Group == "" {
		b.WriteString("/api/")
	} else {
		b.WriteString("/apis/")
		b.WriteString(r.GVR.Group)
		b.WriteByte('/')
	}
	b.WriteString(r.GVR.Version)
	if r.Namespaced && namespace != "" {
		b.WriteString("/namespaces/")
		b.WriteString(namespace)
	}
	b.WriteByte('/')
	b.WriteString(r.GVR.Resource)
	b.WriteByte('/')
	b.WriteString(name)
	return b.String()
}

// Resolver turns the names users write (pods, po, deploy, deployments.apps,
// apps/v1/deployments, widgets.example.com) into Resources through discovery,
// the way kubectl does, preferring the server's preferred version.
type Resolver interface {
	Resolve(name string) (Resource, error)
	// Reset forgets cached discovery, so that new CRDs are found.
	Reset()
}

// DiscoveryResolver is the Resolver backed by the API server's discovery.
type DiscoveryResolver struct {
	mu       sync.Mutex
	cached   discovery.CachedDiscoveryInterface
	deferred *restmapper.DeferredDiscoveryRESTMapper
	mapper   meta.RESTMapper
}

var _ Resolver = (*DiscoveryResolver)(nil)

// NewDiscoveryResolver caches discovery in memory until Reset.
func NewDiscoveryResolver(dc discovery.DiscoveryInterface) *DiscoveryResolver {
	cached := memory.NewMemCacheClient(dc)
	deferred := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	return &DiscoveryResolver{
		cached:   cached,
		deferred: deferred,
		mapper:   restmapper.NewShortcutExpander(deferred, cached, func(string) {}),
	}
}

// Reset drops cached discovery.
func (r *DiscoveryResolver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deferred.Reset()
}

// Resolve finds a resource by any of the names kubectl accepts.
func (r *DiscoveryResolver) Resolve(name string) (Resource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name = strings.TrimSpace(name)
	var partial schema.GroupVersionResource
	if strings.Contains(name, "/") {
		parts := strings.Split(name, "/")
		switch len(parts) {
		case 2: // v1/pods
			partial = schema.GroupVersionResource{Version: parts[0], Resource: parts[1]}
		case 3: // apps/v1/deployments
			partial = schema.GroupVersionResource{Group: parts[0], Version: parts[1], Resource: parts[2]}
		default:
			return Resource{}, fmt.Errorf("resource %q: use NAME, NAME.GROUP, VERSION/NAME or GROUP/VERSION/NAME", name)
		}
	} else {
		full, gr := schema.ParseResourceArg(strings.ToLower(name))
		partial = gr.WithVersion("")
		if full != nil {
			if gvr, err := r.mapper.ResourceFor(*full); err == nil {
				partial = gvr
			}
		}
	}
	gvr, err := r.mapper.ResourceFor(partial)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q not found on the server: %w", name, err)
	}
	gvk, err := r.mapper.KindFor(gvr)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", name, err)
	}
	mapping, err := r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", name, err)
	}
	return Resource{
		GVR:        mapping.Resource,
		GVK:        mapping.GroupVersionKind,
		Namespaced: mapping.Scope.Name() == meta.RESTScopeNameNamespace,
	}, nil
}
