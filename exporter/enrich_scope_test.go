package exporter

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

func TestEnrichScopeOf(t *testing.T) {
	ev := func(nss []string, mod func(*config.Watch)) config.Watch {
		w := config.Watch{Resource: "events", Namespaces: nss, Enrich: config.EnrichInvolvedObject}
		if mod != nil {
			mod(&w)
		}
		return w
	}
	for _, tc := range []struct {
		name   string
		watch  []config.Watch
		rules  []int
		all    int
		nss    []string
		ruleOf map[string]int
	}{
		{"no enriching rule", []config.Watch{{Resource: "events", Namespaces: []string{"a"}}}, nil, -1, nil, map[string]int{"": -1, "a": -1}},
		{"one rule, two namespaces", []config.Watch{ev([]string{"b", "a"}, nil)}, []int{0}, -1, []string{"a", "b"}, map[string]int{"a": 0, "b": 0, "": 0}},
		{"union, excluded dropped, other rules ignored", []config.Watch{
			{Resource: "pods", Namespaces: []string{"z"}},
			ev([]string{"a", "x"}, func(w *config.Watch) { w.ExcludeNamespaces = []string{"x"} }),
			{Resource: "events"},
			ev([]string{"b", "a", "x"}, nil),
		}, []int{1, 3}, -1, []string{"a", "b", "x"}, map[string]int{"a": 1, "b": 3, "x": 3, "": 1}},
		{"all namespaces", []config.Watch{ev([]string{"a"}, nil), ev(nil, nil)}, []int{0, 1}, 1, nil, map[string]int{"a": 0, "": 1}},
		{"excludeNamespaces alone is all namespaces", []config.Watch{ev(nil, func(w *config.Watch) { w.ExcludeNamespaces = []string{"kube-system"} })}, []int{0}, 0, nil, map[string]int{"": 0}},
		{"namespaceSelector", []config.Watch{ev([]string{"a"}, nil), ev(nil, func(w *config.Watch) { w.NamespaceSelector = "team=shop" })}, []int{0, 1}, 1, nil, map[string]int{"a": 0, "": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := EnrichScopeOf(&config.Config{Watch: tc.watch})
			if !reflect.DeepEqual(s.Rules, tc.rules) || s.AllNamespaces != tc.all || !reflect.DeepEqual(s.Namespaces, tc.nss) {
				t.Errorf("scope = rules %v, all %d, namespaces %q; want %v, %d, %q", s.Rules, s.AllNamespaces, s.Namespaces, tc.rules, tc.all, tc.nss)
			}
			for ns, want := range tc.ruleOf {
				if got := s.RuleOf(ns); got != want {
					t.Errorf("RuleOf(%q) = %d, want %d", ns, got, want)
				}
			}
			if got := s.InformerNamespaces(false); !reflect.DeepEqual(got, []string{""}) {
				t.Errorf("cluster-scoped kinds watched in %q, want all", got)
			}
			want := tc.nss
			if tc.all >= 0 {
				want = []string{""}
			}
			if got := s.InformerNamespaces(true); !reflect.DeepEqual(got, want) && len(tc.rules) > 0 {
				t.Errorf("namespaced kinds watched in %q, want %q", got, want)
			}
		})
	}
}

// informedNamespaces returns, per resource, the namespaces the metadata
// client was asked to list and watch ("" is all namespaces).
func informedNamespaces(actions []clienttesting.Action) map[string][]string {
	seen := map[string]map[string]bool{}
	for _, a := range actions {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			continue
		}
		r := a.GetResource().Resource
		if seen[r] == nil {
			seen[r] = map[string]bool{}
		}
		seen[r][a.GetVerb()+" "+a.GetNamespace()] = true
	}
	out := map[string][]string{}
	for r, m := range seen {
		for k := range m {
			out[r] = append(out[r], k)
		}
		sort.Strings(out[r])
	}
	return out
}

// A rule limited to namespaces watches the involved Pods in those
// namespaces only (never an all-namespaces list or watch), enriches Events
// there, counts an Event about another namespace's object as not cached,
// and still watches cluster-scoped Nodes cluster-wide.
func TestEventEnrichmentWatchesOnlyTheRulesNamespaces(t *testing.T) {
	node := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "uid-node-1", Labels: map[string]string{"zone": "z1"}}}
	md := newMetadataClient(
		partialPod("a", "web-1", map[string]string{"app": "web"}, nil, ""),
		partialPod("b", "api-1", map[string]string{"app": "api"}, nil, ""),
		partialPod("c", "db-1", map[string]string{"app": "db"}, nil, ""),
		node)
	cfg := newConfig([]config.Watch{
		{Resource: "events", Namespaces: []string{"a"}, Enrich: config.EnrichInvolvedObject},
		{Resource: "events", Namespaces: []string{"b"}, Enrich: config.EnrichInvolvedObject},
		{Resource: "pods"}, // not enriching: does not widen enrichment
	})
	h := startHarness(t, cfg, harnessOpts{resolver: eventsResolver(), metadata: md})
	h.waitReady()
	en := h.ex.enrich

	// The first Event of each kind starts its informers.
	h.src.apply(eventRes.GVR, coreEvent("a", "web-1.0", "web-1", 1, "2026-11-28T15:00:00Z", "Warning"), false)
	nodeEv := coreEvent("a", "node-1.0", "node-1", 1, "2026-11-28T15:00:00Z", "Warning")
	nodeEv.Object["involvedObject"] = map[string]any{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "uid-node-1"}
	h.src.apply(eventRes.GVR, nodeEv, false)
	rec := h.sinks["rec"]
	rec.waitFor(t, "the first events", func(e []*event.Event) bool { return len(e) == 2 })
	waitKindSynced(t, en, schema.GroupKind{Kind: "Pod"})
	waitKindSynced(t, en, schema.GroupKind{Kind: "Node"})

	h.src.apply(eventRes.GVR, coreEvent("a", "web-1.0", "web-1", 2, "2026-11-28T15:01:00Z", "Warning"), false)
	h.src.apply(eventRes.GVR, coreEvent("b", "api-1.0", "api-1", 1, "2026-11-28T15:01:00Z", "Warning"), false)
	noNS := coreEvent("b", "api-1.1", "api-1", 1, "2026-11-28T15:01:00Z", "Warning")
	delete(noNS.Object["involvedObject"].(map[string]any), "namespace") // taken from the Event's namespace
	h.src.apply(eventRes.GVR, noNS, false)
	nodeEv = nodeEv.DeepCopy()
	nodeEv.Object["count"] = int64(2)
	h.src.apply(eventRes.GVR, nodeEv, false)
	evs := rec.waitFor(t, "6 events", func(e []*event.Event) bool { return len(e) == 6 })
	got := map[string]string{}
	for _, e := range evs[2:] {
		inv := e.Data.(*event.ChangeData).InvolvedObject
		b, _ := json.Marshal(inv)
		got[e.Namespace+"/"+e.Name] = string(b)
	}
	want := map[string]string{
		"a/web-1.0":  `{"labels":{"app":"web"}}`,
		"b/api-1.0":  `{"labels":{"app":"api"}}`,
		"b/api-1.1":  `{"labels":{"app":"api"}}`,
		"a/node-1.0": `{"labels":{"zone":"z1"}}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("involvedObject by event = %v\nwant %v", got, want)
	}

	// An Event that names an object of a namespace no rule lists (the API
	// server refuses those, but a reference is data): not cached, counted.
	before := testutil.ToFloat64(en.misses.WithLabelValues(missNotCached))
	if inv := en.Lookup(coreEvent("c", "db-1.0", "db-1", 1, "2026-11-28T15:00:00Z", "Warning").Object); inv != nil {
		t.Errorf("an object of namespace c was enriched: %+v", inv)
	}
	if n := testutil.ToFloat64(en.misses.WithLabelValues(missNotCached)) - before; n != 1 {
		t.Errorf("not_cached misses moved by %v, want 1", n)
	}

	ns := informedNamespaces(md.Actions())
	if w := []string{"list a", "list b", "watch a", "watch b"}; !reflect.DeepEqual(ns["pods"], w) {
		t.Errorf("pods were listed/watched in %q, want %q (never all namespaces)", ns["pods"], w)
	}
	if w := []string{"list ", "watch "}; !reflect.DeepEqual(ns["nodes"], w) {
		t.Errorf("nodes were listed/watched in %q, want %q", ns["nodes"], w)
	}
	for _, a := range md.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("metadata client made a %s request on %s", a.GetVerb(), a.GetResource())
		}
	}
}

// One enriching rule over all namespaces, or with a namespaceSelector,
// keeps the cluster-wide informer.
func TestEventEnrichmentClusterWideWhenARuleIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		wide config.Watch
	}{
		{"all namespaces", config.Watch{Resource: "events", Enrich: config.EnrichInvolvedObject}},
		{"namespaceSelector", config.Watch{Resource: "events", NamespaceSelector: "team=shop", Enrich: config.EnrichInvolvedObject}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := newMetadataClient(partialPod("c", "db-1", map[string]string{"app": "db"}, nil, ""))
			cfg := newConfig([]config.Watch{{Resource: "events", Namespaces: []string{"a"}, Enrich: config.EnrichInvolvedObject}, tc.wide})
			// The enricher alone: the harness does not follow namespace
			// selectors.
			ex, err := New(Options{Config: cfg, Resolver: eventsResolver(), Sinks: sinksFor(cfg), Metadata: md, clientFor: newFakeSource(0).client})
			if err != nil {
				t.Fatal(err)
			}
			en := ex.enrich
			t.Cleanup(en.stop)
			ev := coreEvent("c", "db-1.0", "db-1", 1, "2026-11-28T15:00:00Z", "Warning").Object
			_ = en.Lookup(ev) // starts the Pod informers
			waitKindSynced(t, en, schema.GroupKind{Kind: "Pod"})
			if inv := en.Lookup(ev); inv == nil || inv.Labels["app"] != "db" {
				t.Errorf("involvedObject = %+v, want the labels of c/db-1", inv)
			}
			if got, want := informedNamespaces(md.Actions())["pods"], []string{"list ", "watch "}; !reflect.DeepEqual(got, want) {
				t.Errorf("pods were listed/watched in %q, want %q", got, want)
			}
		})
	}
}

// A rule whose namespaces are all excluded leaves no namespace to watch:
// namespaced kinds get no informer and every lookup is a counted miss,
// never a panic or an all-namespaces watch.
func TestEventEnrichmentNoNamespaceLeft(t *testing.T) {
	md := newMetadataClient(partialPod("a", "web-1", nil, nil, ""))
	cfg := newConfig([]config.Watch{{Resource: "events", Namespaces: []string{"a"}, ExcludeNamespaces: []string{"a"}, Enrich: config.EnrichInvolvedObject}})
	h := startHarness(t, cfg, harnessOpts{resolver: eventsResolver(), metadata: md})
	h.waitReady()
	en := h.ex.enrich
	ev := coreEvent("a", "web-1.0", "web-1", 1, "2026-11-28T15:00:00Z", "Warning").Object
	for i := 0; i < 2; i++ {
		if inv := en.Lookup(ev); inv != nil {
			t.Fatalf("lookup %d = %+v, want nil", i, inv)
		}
	}
	if n := testutil.ToFloat64(en.misses.WithLabelValues(missNotCached)); n != 2 {
		t.Errorf("not_cached misses = %v, want 2", n)
	}
	if got := informedNamespaces(md.Actions())["pods"]; len(got) != 0 {
		t.Errorf("pods were listed/watched in %q, want nowhere", got)
	}
	en.mu.RLock()
	k := en.byKind[schema.GroupKind{Kind: "Pod"}]
	en.mu.RUnlock()
	if k == nil || !k.synced() {
		t.Error("a resolved kind with no informer to wait for is not synced")
	}
}
