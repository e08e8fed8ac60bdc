package app

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// fakeResolver knows configmaps (namespaced) and namespaces (cluster-scoped).
type fakeResolver struct{}

func (fakeResolver) Reset() {}
func (fakeResolver) Resolve(name string) (resource.Resource, error) {
	switch name {
	case "configmaps", "cm":
		return resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespaced: true}, nil
	case "namespaces":
		return resource.Resource{GVR: namespacesGVR, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}}, nil
	}
	return resource.Resource{}, fmt.Errorf("resource %q not found on the server", name)
}

func nsObj(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func TestVerifyScopes(t *testing.T) {
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{namespacesGVR: "NamespaceList"},
		nsObj("shop", map[string]string{"team": "shop"}), nsObj("shop-2", map[string]string{"team": "shop"}), nsObj("web", nil))
	cfg := &config.Config{
		Watch: []config.Watch{
			{Resource: "configmaps", Namespaces: []string{"a", "b"}, ExcludeNamespaces: []string{"b"}, LabelSelector: "app=web"},
			{Resource: "cm", ExcludeNamespaces: []string{"kube-system", "kube-public"}, FieldSelector: "metadata.name!=x"},
			{Resource: "configmaps", NamespaceSelector: "team=shop"},
			{Resource: "configmaps", NamespaceSelector: "team=nobody"},
			{Resource: "namespaces", Namespaces: []string{"ignored-for-cluster-scoped"}},
			{Resource: "configmaps", Filter: "true"},
			{Resource: "configmaps", Events: []string{"ADDED"}},
			{Resource: "configmaps", Sinks: []string{"other"}},
		},
	}
	scopes, skipped, err := verifyScopes(context.Background(), cfg, "audit", fakeResolver{}, dyn)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range scopes {
		got = append(got, fmt.Sprintf("%d %s ns=%q l=%q f=%q", s.rule, s.res.GVR.Resource, s.namespace, s.label, s.field))
	}
	want := []string{
		`0 configmaps ns="a" l="app=web" f=""`,
		`1 configmaps ns="" l="" f="metadata.name!=x,metadata.namespace!=kube-public,metadata.namespace!=kube-system"`,
		`2 configmaps ns="shop" l="" f=""`,
		`2 configmaps ns="shop-2" l="" f=""`,
		`4 namespaces ns="" l="" f=""`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scopes\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if len(skipped) != 2 || skipped[0].Rule != 5 || !strings.Contains(skipped[0].Reason, "filter") || skipped[1].Rule != 6 || !strings.Contains(skipped[1].Reason, "ADDED") {
		t.Errorf("not compared: %+v", skipped)
	}

	cfg.Watch = []config.Watch{{Resource: "gizmos"}}
	_, _, err = verifyScopes(context.Background(), cfg, "audit", fakeResolver{}, dyn)
	var ee *exitError
	if err == nil || !strings.Contains(err.Error(), `watch[0].resource: resource "gizmos" not found`) || !errors.As(err, &ee) || ee.code != exitConfig {
		t.Errorf("unknown resource: %v", err)
	}
}
