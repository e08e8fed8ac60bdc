package exporter

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestAudit6TypeMetaAsBefore: withTypeMeta and apiVersionOf give what the
// code before them gave (the object as it was, or a copy with res's
// apiVersion and kind; the envelope's apiVersion res.APIVersion()) for
// every resource shape, degenerate ones included (no kind, no version, a
// group without a version), and every apiVersion and kind an object may
// carry: missing, null, of another type, empty, or another's.
func TestAudit6TypeMetaAsBefore(t *testing.T) {
	var resources []Resource
	for _, g := range []string{"", "apps", "stable.example.com", "events.k8s.io"} {
		for _, v := range []string{"", "v1", "v1beta1"} {
			for _, k := range []string{"", "ConfigMap", "Widget"} {
				resources = append(resources, Resource{GVK: schema.GroupVersionKind{Group: g, Version: v, Kind: k}})
			}
		}
	}
	values := func(res Resource) []any {
		av := res.APIVersion()
		out := []any{absent6{}, nil, 1, int64(2), 3.0, true, "", av, av + "x", "/" + av, av + "/", "v1", "apps/v1", "stable.example.com/v1beta1", map[string]any{}, []any{av}}
		if len(av) > 0 {
			out = append(out, av[:len(av)-1], av[1:])
		}
		return out
	}
	for _, res := range resources {
		for _, av := range values(res) {
			for _, kind := range []any{absent6{}, nil, 1, "", res.GVK.Kind, "ConfigMap", "Widget", []any{res.GVK.Kind}} {
				m := map[string]any{"metadata": map[string]any{"uid": "u"}}
				set6(m, "apiVersion", av)
				set6(m, "kind", kind)
				u := &unstructured.Unstructured{Object: m}
				where := fmt.Sprintf("%v: apiVersion %#v kind %#v", res.GVK, av, kind)
				got, want := withTypeMeta(u, res), oldWithTypeMeta6(u, res)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: withTypeMeta = %#v, before %#v", where, got, want)
				}
				if gotSame, wantSame := reflect.ValueOf(got).Pointer() == reflect.ValueOf(m).Pointer(), reflect.ValueOf(want).Pointer() == reflect.ValueOf(m).Pointer(); gotSame != wantSame {
					t.Errorf("%s: withTypeMeta copied %v, before %v", where, !gotSame, !wantSame)
				}
				if got := apiVersionOf(m, res); got != res.APIVersion() {
					t.Errorf("%s: apiVersionOf = %q, before %q", where, got, res.APIVersion())
				}
			}
		}
	}
}
