package exporter

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// audit5Objects are objects with ordinary and odd metadata.
func audit5Objects() map[string]map[string]any {
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

// TestAudit5MetaOfOddMetadata: metaOf agrees with the unstructured
// getters, keyOf with GetNamespace/GetName, and recordOf with
// GetUID/GetResourceVersion for every odd shape.
func TestAudit5MetaOfOddMetadata(t *testing.T) {
	s := &scope{}
	for name, obj := range audit5Objects() {
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

// audit5Resources are a core namespaced, a grouped namespaced and a
// cluster-scoped resource.
func audit5Resources() map[string]Resource {
	return map[string]Resource{
		"core":    coreResource("configmaps", "ConfigMap"),
		"grouped": {GVR: schema.GroupVersionResource{Group: "apps.example.com", Version: "v1beta1", Resource: "widgets"}, GVK: schema.GroupVersionKind{Group: "apps.example.com", Version: "v1beta1", Kind: "Widget"}, Namespaced: true},
		"cluster": {GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}},
	}
}

// TestAudit5RenderEnvelopeAsBefore: the envelope attributes render sets
// are what the code before drain-cpu computed with the getters and string
// concatenation (id, source, type, subject, uid, resourceversion), for
// every change kind, resource shape and odd metadata.
func TestAudit5RenderEnvelopeAsBefore(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "configmaps"})
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for rname, res := range audit5Resources() {
		for oname, obj := range audit5Objects() {
			if obj == nil {
				continue
			}
			for _, kind := range []event.Change{event.Added, event.Deleted} {
				for _, key := range []Key{{Namespace: "ns", Name: "n"}, {Name: "n"}, {Namespace: "a/b", Name: "é~1"}} {
					u := &unstructured.Unstructured{Object: obj}
					ev, err := render(newOrigin("clu"), res, key, change{kind: kind, obj: u}, metaOf(u), r, now)
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

// TestAudit5SourceOfTwoClusters: two exporters with different cluster
// names rendering concurrently each get their own source (run with
// -race).
func TestAudit5SourceOfTwoClusters(t *testing.T) {
	r := testRule(t, config.Watch{Resource: "configmaps"})
	res := coreResource("configmaps", "ConfigMap")
	var wg sync.WaitGroup
	for _, cluster := range []string{"east", "west", "", "east2", "kubefeed/x"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3000; i++ {
				u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"uid": "u", "resourceVersion": fmt.Sprint(i)}}}
				ev, err := render(newOrigin(cluster), res, Key{Namespace: "ns", Name: "n"}, change{kind: event.Added, obj: u}, metaOf(u), r, time.Now())
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

func sortedStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
