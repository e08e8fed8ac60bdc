package plan

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/internal/fixture"
	"github.com/kubefeed/kubefeed/internal/golden"
)

// envelopeResources are a core namespaced, a grouped namespaced and a
// cluster-scoped resource.
func envelopeResources() map[string]resource.Resource {
	return map[string]resource.Resource{
		"core":    coreResource("configmaps", "ConfigMap"),
		"grouped": {GVR: schema.GroupVersionResource{Group: "apps.example.com", Version: "v1beta1", Resource: "widgets"}, GVK: schema.GroupVersionKind{Group: "apps.example.com", Version: "v1beta1", Kind: "Widget"}, Namespaced: true},
		"cluster": {GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}},
	}
}

// TestRenderEnvelopeAttributes: the envelope attributes render sets (id,
// source, type, subject, uid, resourceversion) are what the getters and
// string concatenation give, for every change kind, resource shape and
// odd metadata.
func TestRenderEnvelopeAttributes(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "configmaps"})
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for rname, res := range envelopeResources() {
		for oname, obj := range fixture.OddMetadata() {
			if obj == nil {
				continue
			}
			for _, kind := range []event.Change{event.Added, event.Deleted} {
				for _, key := range []state.Key{{Namespace: "ns", Name: "n"}, {Name: "n"}, {Namespace: "a/b", Name: "é~1"}} {
					u := &unstructured.Unstructured{Object: obj}
					ev, err := render(NewOrigin("clu"), res, key, Change{Kind: kind, Obj: u}, MetaOf(u), r, now)
					if err != nil || ev == nil {
						t.Fatalf("%s %s %s: %v %v", rname, oname, kind, ev, err)
					}
					uid, rv := string(u.GetUID()), u.GetResourceVersion()
					var p string
					if res.GVR.Group == "" {
						p = "/api/" + res.GVR.Version
					} else {
						p = "/apis/" + res.GVR.Group + "/" + res.GVR.Version
					}
					if res.Namespaced && key.Namespace != "" {
						p += "/namespaces/" + key.Namespace
					}
					p += "/" + res.GVR.Resource + "/" + key.Name
					want := [...]string{uid + "." + rv + "." + string(kind), "kubefeed/clu", "io.kubefeed.resource." + string(kind), p, uid, rv}
					got := [...]string{ev.ID, ev.Source, ev.Type, ev.Subject, ev.UID, ev.ResourceVersion}
					if got != want {
						t.Errorf("%s %s %s %+v:\n got %q\nwant %q", rname, oname, kind, key, got, want)
					}
				}
			}
		}
	}
}

// TestRenderSourceOfTwoClusters: two exporters with different cluster
// names rendering concurrently each get their own source (run with
// -race).
func TestRenderSourceOfTwoClusters(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "configmaps"})
	res := coreResource("configmaps", "ConfigMap")
	var wg sync.WaitGroup
	for _, cluster := range []string{"east", "west", "", "east2", "kubefeed/x"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3000; i++ {
				u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"uid": "u", "resourceVersion": fmt.Sprint(i)}}}
				ev, err := render(NewOrigin(cluster), res, state.Key{Namespace: "ns", Name: "n"}, Change{Kind: event.Added, Obj: u}, MetaOf(u), r, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				if ev.Source != "kubefeed/"+cluster || ev.Cluster != cluster && ev.Cluster != "" {
					t.Errorf("cluster %q: source %q cluster %q", cluster, ev.Source, ev.Cluster)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// absent, as a value setUnlessAbsent is given, leaves the field out.
type absent struct{}

func setUnlessAbsent(m map[string]any, k string, v any) {
	if _, ok := v.(absent); !ok {
		m[k] = v
	}
}

// TestWithTypeMetaAsGolden: withTypeMeta gives the object as it was, or
// a copy with res's apiVersion and kind, and apiVersionOf gives the
// envelope's apiVersion res.APIVersion(), for every resource shape,
// degenerate ones included (no kind, no version, a group without a
// version), and every apiVersion and kind an object may carry: missing,
// null, of another type, empty, or another's. What they give is
// compared with testdata/typemeta.golden.
func TestWithTypeMetaAsGolden(t *testing.T) {
	var resources []resource.Resource
	for _, g := range []string{"", "apps", "stable.example.com", "events.k8s.io"} {
		for _, v := range []string{"", "v1", "v1beta1"} {
			for _, k := range []string{"", "ConfigMap", "Widget"} {
				resources = append(resources, resource.Resource{GVK: schema.GroupVersionKind{Group: g, Version: v, Kind: k}})
			}
		}
	}
	values := func(res resource.Resource) []any {
		av := res.APIVersion()
		out := []any{absent{}, nil, 1, int64(2), 3.0, true, "", av, av + "x", "/" + av, av + "/", "v1", "apps/v1", "stable.example.com/v1beta1", map[string]any{}, []any{av}}
		if len(av) > 0 {
			out = append(out, av[:len(av)-1], av[1:])
		}
		return out
	}
	g := golden.New("withTypeMeta and apiVersionOf (TestWithTypeMetaAsGolden; go test -run TestWithTypeMetaAsGolden -update rewrites it):\n"+
		"the object's apiVersion and kind, then the object withTypeMeta gives (same: the object itself; copy: a new map) and apiVersionOf.", 8, 18, 48)
	for _, res := range resources {
		g.StartSection(fmt.Sprintf("%#v", res.GVK))
		for _, av := range values(res) {
			for _, kind := range []any{absent{}, nil, 1, "", res.GVK.Kind, "ConfigMap", "Widget", []any{res.GVK.Kind}} {
				m := map[string]any{"metadata": map[string]any{"uid": "u"}}
				setUnlessAbsent(m, "apiVersion", av)
				setUnlessAbsent(m, "kind", kind)
				u := &unstructured.Unstructured{Object: m}
				got := withTypeMeta(u, res)
				same := "copy"
				if reflect.ValueOf(got).Pointer() == reflect.ValueOf(m).Pointer() {
					same = "same"
				}
				g.Add(fmt.Sprintf("apiVersion %s kind %s -> %s %#v apiVersionOf %q\n", goValue(av), goValue(kind), same, got, apiVersionOf(m, res)))
				if got := apiVersionOf(m, res); got != res.APIVersion() {
					t.Errorf("%v: apiVersion %#v kind %#v: apiVersionOf = %q, want %q", res.GVK, av, kind, got, res.APIVersion())
				}
			}
		}
	}
	g.Check(t, "typemeta")
}

// goValue is v in Go syntax, or "absent".
func goValue(v any) string {
	if _, ok := v.(absent); ok {
		return "absent"
	}
	return fmt.Sprintf("%#v", v)
}
