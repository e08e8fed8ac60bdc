package exporter

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
