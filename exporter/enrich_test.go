package exporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

func partialPod(ns, name string, labels map[string]string, ann map[string]string, owner string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: labels, Annotations: ann}}
	if owner != "" {
		yes := true
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: "uid-" + types.UID(owner), Controller: &yes}}
	}
	return m
}

func newMetadataClient(objs ...runtime.Object) *metadatafake.FakeMetadataClient {
	scheme := metadatafake.NewTestScheme()
	_ = metav1.AddMetaToScheme(scheme)
	return metadatafake.NewSimpleMetadataClient(scheme, objs...)
}

// waitKindSynced waits until the metadata informer of gk has synced (a
// liveness bound).
func waitKindSynced(t *testing.T, en *enricher, gk schema.GroupKind) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		en.mu.RLock()
		k := en.byKind[gk]
		en.mu.RUnlock()
		if k != nil && k.synced() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metadata informer of %s never synced", gk)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With enrich: involvedObject, Events carry the involved Pod's labels,
// annotations (without last-applied) and owner references from the
// metadata cache; the first Event of a kind starts its informer and may go
// out without. An Event about a Pod not in the cache is sent at once
// without enrichment and counted. No GET is ever made.
func TestEventEnrichment(t *testing.T) {
	md := newMetadataClient(partialPod("shop", "web-1", map[string]string{"app": "web", "team/x~y": "z"},
		map[string]string{"note": "n", lastApplied: `{"secret":"x"}`}, "web-abc"))
	h := startHarness(t, newConfig([]config.Watch{{Resource: "events", Enrich: config.EnrichInvolvedObject}}), harnessOpts{resolver: eventsResolver(), metadata: md})
	h.waitReady()
	rec := h.sinks["rec"]
	h.src.apply(eventRes.GVR, coreEvent("shop", "web-1.a", "web-1", 1, "2026-11-28T15:00:00Z", "Warning"), false)
	rec.waitFor(t, "the first event", func(e []*event.Event) bool { return len(e) == 1 })
	waitKindSynced(t, h.ex.enrich, schema.GroupKind{Kind: "Pod"})

	h.src.apply(eventRes.GVR, coreEvent("shop", "web-1.a", "web-1", 2, "2026-11-28T15:01:00Z", "Warning"), false)
	h.src.apply(eventRes.GVR, coreEvent("shop", "gone.b", "gone", 1, "2026-11-28T15:01:00Z", "Warning"), false)
	h.src.apply(eventRes.GVR, coreEvent("shop", "node.c", "node-1", 1, "2026-11-28T15:01:00Z", "Normal"), false) // kind Pod, not cached
	evs := rec.waitFor(t, "4 events", func(e []*event.Event) bool { return len(e) == 4 })
	byName := map[string]*event.Event{}
	for _, e := range evs[1:] {
		byName[e.Name] = e
	}
	hit := byName["web-1.a"].Data.(*event.ChangeData).InvolvedObject
	if hit == nil {
		t.Fatalf("web-1.a not enriched")
	}
	b, _ := json.Marshal(hit)
	want := `{"labels":{"app":"web","team/x~y":"z"},"annotations":{"note":"n"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-abc","uid":"uid-web-abc","controller":true}]}`
	if string(b) != want {
		t.Errorf("involvedObject = %s\nwant %s", b, want)
	}
	if ops(byName["web-1.a"]) != `[{"op":"replace","path":"/count","value":2},{"op":"replace","path":"/lastTimestamp","value":"2026-11-28T15:01:00Z"}]` {
		t.Errorf("enrichment changed the patch: %s", ops(byName["web-1.a"]))
	}
	for _, n := range []string{"gone.b", "node.c"} {
		if byName[n] == nil || byName[n].Data.(*event.ChangeData).InvolvedObject != nil {
			t.Errorf("%s: want sent without enrichment, got %+v", n, byName[n])
		}
		raw, _ := event.Marshal(byName[n])
		if strings.Contains(string(raw), "involvedObject\":{\"labels") {
			t.Errorf("%s: empty enrichment encoded: %s", n, raw)
		}
	}
	if n := testutil.ToFloat64(h.ex.enrich.misses.WithLabelValues(missNotCached)); n != 2 {
		t.Errorf("not_cached misses = %v, want 2", n)
	}
	if st := h.ex.Stats()["rec"]; st.Retries != 0 {
		t.Errorf("a miss was retried: %+v", st)
	}
	for _, a := range md.Actions() {
		if a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("metadata client made a %s request on %s", a.GetVerb(), a.GetResource())
		}
	}
}

// An Event about a kind the server does not serve is sent without
// enrichment and counted as unresolved; an Event without a reference is
// neither enriched nor counted.
func TestEventEnrichmentUnresolvedKind(t *testing.T) {
	h := startHarness(t, newConfig([]config.Watch{{Resource: "events", Enrich: config.EnrichInvolvedObject}}), harnessOpts{resolver: eventsResolver(), metadata: newMetadataClient()})
	h.waitReady()
	ev := coreEvent("shop", "w.a", "w", 1, "2026-11-28T15:00:00Z", "Normal")
	ev.Object["involvedObject"] = map[string]any{"apiVersion": "example.com/v1", "kind": "Gadget", "namespace": "shop", "name": "w"}
	bare := coreEvent("shop", "x.b", "x", 1, "2026-11-28T15:00:00Z", "Normal")
	delete(bare.Object, "involvedObject")
	bad := coreEvent("shop", "y.c", "y", 1, "2026-11-28T15:00:00Z", "Normal")
	bad.Object["involvedObject"] = map[string]any{"apiVersion": "a/b/c", "kind": "Pod", "name": "y"}
	for _, u := range []*unstructured.Unstructured{ev, bare, bad} {
		h.src.apply(eventRes.GVR, u, false)
	}
	h.sinks["rec"].waitFor(t, "3 events", func(e []*event.Event) bool { return len(e) == 3 })
	if n := testutil.ToFloat64(h.ex.enrich.misses.WithLabelValues(missUnresolved)); n != 2 {
		t.Errorf("unresolved misses = %v, want 2", n)
	}
}

// A rule asking for enrichment without a metadata client is a clear error
// at start.
func TestEventEnrichmentNeedsMetadataClient(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "pods"}, {Resource: "events", Enrich: config.EnrichInvolvedObject}})
	_, err := New(Options{Config: cfg, Resolver: eventsResolver(), Sinks: sinksFor(cfg), clientFor: newFakeSource(0).client})
	if err == nil || !strings.Contains(err.Error(), "watch[1].enrich") || !strings.Contains(err.Error(), "metadata client") {
		t.Fatalf("New error = %v, want one naming watch[1].enrich and the metadata client", err)
	}
}

// shrinkMetadata keeps what enrichment reads, and never the last-applied
// configuration.
func TestShrinkMetadata(t *testing.T) {
	in := partialPod("a", "p", map[string]string{"k": "v"}, map[string]string{lastApplied: "{}"}, "rs")
	in.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "m"}}
	in.Finalizers = []string{"f"}
	out, _ := shrinkMetadata(in)
	m := out.(*metav1.PartialObjectMetadata)
	if m.Annotations != nil || m.ManagedFields != nil || m.Finalizers != nil || m.Labels["k"] != "v" || len(m.OwnerReferences) != 1 || m.UID != "uid-p" {
		t.Errorf("shrunk = %+v", m.ObjectMeta)
	}
	if in.Annotations[lastApplied] != "{}" {
		t.Error("the cached object's annotations were modified")
	}
}
