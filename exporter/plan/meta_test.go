package plan

import (
	"testing"

	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/internal/fixture"
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
		want := Meta{u.GetNamespace(), u.GetName(), string(u.GetUID()), u.GetResourceVersion()}
		if got := MetaOf(u); got != want {
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

// TestMetaOfOddMetadata: MetaOf agrees with the unstructured getters,
// and recordOf with GetUID/GetResourceVersion, for every odd shape.
func TestMetaOfOddMetadata(t *testing.T) {
	for name, obj := range fixture.OddMetadata() {
		u := &unstructured.Unstructured{Object: obj}
		want := Meta{u.GetNamespace(), u.GetName(), string(u.GetUID()), u.GetResourceVersion()}
		if got := MetaOf(u); got != want {
			t.Errorf("%s: metaOf = %+v, getters %+v", name, got, want)
		}
		if r := recordOf(u); r.UID != string(u.GetUID()) || r.ResourceVersion != u.GetResourceVersion() || r.Object != u {
			t.Errorf("%s: recordOf = %+v", name, r)
		}
	}
}
