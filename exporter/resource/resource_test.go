package resource

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestResourcePath(t *testing.T) {
	deploy := Resource{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Namespaced: true}
	node := Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}}
	cm := Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Namespaced: true}
	for _, c := range []struct {
		res      Resource
		ns, name string
		want     string
	}{
		{deploy, "prod", "web", "/apis/apps/v1/namespaces/prod/deployments/web"},
		{node, "", "n1", "/api/v1/nodes/n1"},
		{node, "ignored", "n1", "/api/v1/nodes/n1"},
		{cm, "a~b", "c.d-e", "/api/v1/namespaces/a~b/configmaps/c.d-e"},
		{cm, "", "x", "/api/v1/configmaps/x"},
	} {
		if got := c.res.Path(c.ns, c.name); got != c.want {
			t.Errorf("Path(%q, %q) = %q, want %q", c.ns, c.name, got, c.want)
		}
	}
}
