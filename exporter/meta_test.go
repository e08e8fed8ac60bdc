package exporter

import (
	"testing"

	"github.com/kubefeed/kubefeed/exporter/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestMetaOfIsGetters: metaOf reads what the unstructured getters read,
// for odd metadata too (missing, not a map, non-string fields).
func TestMetaOfIsGetters(t *testing.T) {
	for name, obj := range map[string]map[string]any{
		"full":       {"metadata": map[string]any{"namespace": "a/b", "name": "c~d", "uid": "u", "resourceVersion": "18446744073709551617"}},
		"none":       {},
		"nil":        {"metadata": nil},
		"not a map":  {"metadata": "x"},
		"non-string": {"metadata": map[string]any{"namespace": 1, "name": nil, "uid": int64(1) << 60, "resourceVersion": 9007199254740993.0}},
		"partial":    {"metadata": map[string]any{"name": "n"}},
	} {
		u := &unstructured.Unstructured{Object: obj}
		want := objMeta{u.GetNamespace(), u.GetName(), string(u.GetUID()), u.GetResourceVersion()}
		if got := metaOf(u); got != want {
			t.Errorf("%s: metaOf = %+v, getters say %+v", name, got, want)
		}
	}
}

func TestIsAPIVersionIsAPIVersion(t *testing.T) {
	for _, gv := range []schema.GroupVersion{{Version: "v1"}, {Group: "apps", Version: "v1"}, {Group: "example.com", Version: "v1beta1"}} {
		res := resource.Resource{GVK: gv.WithKind("K")}
		for _, s := range []string{"", "v1", "apps/v1", "apps/v2", "appsXv1", "example.com/v1beta1", "example.com/v1", "/v1", "apps/", "v1beta1"} {
			if got, want := res.IsAPIVersion(s), s == res.APIVersion(); got != want {
				t.Errorf("%v: IsAPIVersion(%q) = %v, want %v", gv, s, got, want)
			}
		}
		m := map[string]any{"apiVersion": res.APIVersion(), "kind": "K"}
		if got := apiVersionOf(m, res); got != res.APIVersion() {
			t.Errorf("apiVersionOf = %q", got)
		}
		if !hasTypeMeta(m, res) || hasTypeMeta(map[string]any{"apiVersion": res.APIVersion(), "kind": "L"}, res) || hasTypeMeta(map[string]any{"kind": "K"}, res) {
			t.Errorf("%v: hasTypeMeta wrong", gv)
		}
		if got := apiVersionOf(map[string]any{"apiVersion": 5}, res); got != res.APIVersion() {
			t.Errorf("apiVersionOf a non-string = %q", got)
		}
	}
}

// oddMetadataObjects are objects with ordinary and odd metadata.
func oddMetadataObjects() map[string]map[string]any {
	return map[string]map[string]any{
		"plain":          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"namespace": "ns", "name": "n", "uid": "u-1", "resourceVersion": "42"}, "data": map[string]any{"k": "v"}},
		"no metadata":    {"apiVersion": "v1", "kind": "ConfigMap"},
		"null metadata":  {"metadata": nil},
		"string meta":    {"metadata": "x"},
		"slice meta":     {"metadata": []any{map[string]any{"uid": "u"}}},
		"map[string]str": {"metadata": map[string]string{"uid": "u", "name": "n"}},
		"numbers":        {"metadata": map[string]any{"namespace": 1.0, "name": int64(2), "uid": 3, "resourceVersion": 4.5}},
		"nested":         {"metadata": map[string]any{"namespace": map[string]any{"x": "y"}, "name": []any{"n"}, "uid": map[string]any{}, "resourceVersion": true}},
		"nulls":          {"metadata": map[string]any{"namespace": nil, "name": nil, "uid": nil, "resourceVersion": nil}},
		"empty strings":  {"metadata": map[string]any{"namespace": "", "name": "", "uid": "", "resourceVersion": ""}},
		"unicode":        {"metadata": map[string]any{"namespace": "né\u2028", "name": "a\"b\\c<>&\xff", "uid": "日本", "resourceVersion": "18446744073709551617"}},
		"nil object":     nil,
	}
}

// TestMetaOfOddMetadata: metaOf agrees with the unstructured
// getters, keyOf with GetNamespace/GetName, and recordOf with
// GetUID/GetResourceVersion for every odd shape.
func TestMetaOfOddMetadata(t *testing.T) {
	s := &scope{}
	for name, obj := range oddMetadataObjects() {
		u := &unstructured.Unstructured{Object: obj}
		want := objMeta{u.GetNamespace(), u.GetName(), string(u.GetUID()), u.GetResourceVersion()}
		if got := metaOf(u); got != want {
			t.Errorf("%s: metaOf = %+v, getters %+v", name, got, want)
		}
		if k := s.keyOf(u); k.Namespace != u.GetNamespace() || k.Name != u.GetName() {
			t.Errorf("%s: keyOf = %+v", name, k)
		}
		if r := recordOf(u); r.UID != string(u.GetUID()) || r.ResourceVersion != u.GetResourceVersion() || r.Object != u {
			t.Errorf("%s: recordOf = %+v", name, r)
		}
	}
}
