package state

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// TestKeyCacheKeyAndString: a Key finds its object in an informer's store
// (CacheKey is the store's own key function) and names it as a user writes
// the resource, for namespaced and cluster-scoped objects alike.
func TestKeyCacheKeyAndString(t *testing.T) {
	nodes := schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	crb := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}
	for _, c := range []struct {
		name      string
		key       Key
		wantCache string
		wantStr   string
	}{
		{"core namespaced", Key{GVR: cmGVR, Namespace: "prod", Name: "web"}, "prod/web", "configmaps/prod/web"},
		{"grouped namespaced", Key{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Namespace: "prod", Name: "web"}, "prod/web", "deployments.apps/prod/web"},
		{"core cluster-scoped", Key{GVR: nodes, Name: "node-1"}, "node-1", "nodes/node-1"},
		{"grouped cluster-scoped, ':' in the name", Key{GVR: crb, Name: "system:kube-dns"}, "system:kube-dns", "clusterrolebindings.rbac.authorization.k8s.io/system:kube-dns"},
		{"'~' in namespace and name", Key{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, Namespace: "a~b", Name: "c~d"}, "a~b/c~d", "widgets.example.com/a~b/c~d"},
		{"'/' in the name", Key{GVR: cmGVR, Namespace: "ns", Name: "a/b"}, "ns/a/b", "configmaps/ns/a/b"},
		{"'/' in a cluster-scoped name", Key{GVR: nodes, Name: "a/b"}, "a/b", "nodes/a/b"},
		{"version is not part of the name", Key{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1beta2", Resource: "deployments"}, Namespace: "prod", Name: "web"}, "prod/web", "deployments.apps/prod/web"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.key.CacheKey(); got != c.wantCache {
				t.Errorf("CacheKey() = %q, want %q", got, c.wantCache)
			}
			if got := c.key.String(); got != c.wantStr {
				t.Errorf("String() = %q, want %q", got, c.wantStr)
			}
			// The informer's store is keyed by MetaNamespaceKeyFunc: the
			// lookup of a key must use the same string.
			u := &unstructured.Unstructured{Object: map[string]any{}}
			u.SetNamespace(c.key.Namespace)
			u.SetName(c.key.Name)
			want, err := cache.MetaNamespaceKeyFunc(u)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.key.CacheKey(); got != want {
				t.Errorf("CacheKey() = %q, informer store key = %q", got, want)
			}
			st := cache.NewStore(cache.MetaNamespaceKeyFunc)
			if err := st.Add(u); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := st.GetByKey(c.key.CacheKey()); !ok {
				t.Errorf("informer store has no object at CacheKey() %q", c.key.CacheKey())
			}
		})
	}
}

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
