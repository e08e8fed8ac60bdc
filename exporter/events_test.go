package exporter

import (
	"encoding/json"
	"fmt"
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
	"github.com/kubefeed/kubefeed/sinks"
)

var (
	eventRes   = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Event"}, Namespaced: true}
	eventV1Res = Resource{GVR: schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"}, Namespaced: true}
	podRes     = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespaced: true}
	nodeRes    = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}}
)

// ResolveKind knows pods, nodes and the resources of newResolver.
func (r *fakeResolver) ResolveKind(gk schema.GroupKind) (Resource, error) {
	for _, res := range []Resource{podRes, nodeRes, cmRes, deployRes} {
		if res.GVK.GroupKind() == gk {
			return res, nil
		}
	}
	return Resource{}, fmt.Errorf("kind %s not found", gk)
}

func eventsResolver() *fakeResolver {
	r := newResolver()
	r.known["events"] = eventRes
	r.known["events.events.k8s.io"] = eventV1Res
	return r
}

// coreEvent is a core/v1 Event about the Pod ns/pod, as kubelet writes
// them (legacy fields; eventTime null).
func coreEvent(ns, name, pod string, count int64, last, typ string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"namespace": ns, "name": name, "managedFields": []any{map[string]any{"manager": "kubelet"}}},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod, "uid": "uid-" + pod, "fieldPath": "spec.containers{app}"},
		"reason":         "BackOff", "message": "Back-off restarting failed container app", "type": typ,
		"source":         map[string]any{"component": "kubelet", "host": "node-1"},
		"firstTimestamp": "2026-11-28T15:00:00Z", "lastTimestamp": last, "count": count, "eventTime": nil,
		"reportingComponent": "kubelet", "reportingInstance": "node-1",
	}}
}

// v1Event is an events.k8s.io/v1 Event (eventTime, series, regarding).
func v1Event(ns, name, pod string, series map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "events.k8s.io/v1", "kind": "Event",
		"metadata":  map[string]any{"namespace": ns, "name": name},
		"eventTime": "2026-11-28T15:00:00.000000Z", "reportingController": "example.com/ctl", "reportingInstance": "ctl-0",
		"action": "Sync", "reason": "Failed", "note": "sync failed", "type": "Warning",
		"regarding": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod, "uid": "uid-" + pod},
	}}
	if series != nil {
		u.Object["series"] = series
	}
	return u
}

func ops(e *event.Event) string {
	b, _ := json.Marshal(e.Data.(*event.ChangeData).Patch)
	return string(b)
}

// A count bump is a modified event whose patch holds only count and
// lastTimestamp; for events.k8s.io/v1 only the series.
func TestEventCountBumpIsCompactPatch(t *testing.T) {
	h := startHarness(t, newConfig([]config.Watch{{Resource: "events"}, {Resource: "events.events.k8s.io"}}), harnessOpts{resolver: eventsResolver()})
	h.waitReady()
	h.src.apply(eventRes.GVR, coreEvent("shop", "web-1.a", "web-1", 1, "2026-11-28T15:00:00Z", "Warning"), false)
	h.src.apply(eventV1Res.GVR, v1Event("shop", "web-1.b", "web-1", nil), false)
	rec := h.sinks["rec"]
	rec.waitFor(t, "2 added", func(e []*event.Event) bool { return count(e, event.Added.Type()) == 2 })
	h.src.apply(eventRes.GVR, coreEvent("shop", "web-1.a", "web-1", 2, "2026-11-28T15:05:00Z", "Warning"), false)
	h.src.apply(eventV1Res.GVR, v1Event("shop", "web-1.b", "web-1", map[string]any{"count": int64(2), "lastObservedTime": "2026-11-28T15:05:00.000000Z"}), false)
	evs := rec.waitFor(t, "2 modified", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 2 })
	h.src.apply(eventV1Res.GVR, v1Event("shop", "web-1.b", "web-1", map[string]any{"count": int64(3), "lastObservedTime": "2026-11-28T15:06:00.000000Z"}), false)
	evs = rec.waitFor(t, "3 modified", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 3 })
	var got []string
	for _, e := range evs {
		if e.Type != event.Modified.Type() {
			if m, _ := e.Data.(*event.ChangeData).Object["metadata"].(map[string]any); m["managedFields"] != nil {
				t.Errorf("%s carries managedFields", e.Name)
			}
			continue
		}
		got = append(got, e.Name+" "+ops(e))
	}
	want := []string{
		`web-1.a [{"op":"replace","path":"/count","value":2},{"op":"replace","path":"/lastTimestamp","value":"2026-11-28T15:05:00Z"}]`,
		`web-1.b [{"op":"add","path":"/series","value":{"count":2,"lastObservedTime":"2026-11-28T15:05:00.000000Z"}}]`,
		`web-1.b [{"op":"replace","path":"/series/count","value":3},{"op":"replace","path":"/series/lastObservedTime","value":"2026-11-28T15:06:00.000000Z"}]`,
	}
	if strings.Join(sortedCopy(got), "\n") != strings.Join(want, "\n") {
		t.Errorf("patches:\n%s\nwant:\n%s", strings.Join(sortedCopy(got), "\n"), strings.Join(want, "\n"))
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// waitForgotten waits until the sink holds no record for k (a liveness
// bound, not a timing assertion): the delivery that dropped it is done.
func waitForgotten(t *testing.T, h *harness, k Key) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := h.ex.byName["rec"].store.Get(k); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record of %s was never forgotten", k)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The deletion of an Event (its TTL expiring) emits nothing by default,
// and the delivered record is forgotten all the same; expiry: emit reports
// it. Other resources' deletions are not affected.
func TestEventExpiry(t *testing.T) {
	for _, tc := range []struct {
		expiry      string
		wantDeleted int
	}{{"", 0}, {config.ExpirySkip, 0}, {config.ExpiryEmit, 1}} {
		t.Run("expiry="+tc.expiry, func(t *testing.T) {
			h := startHarness(t, newConfig([]config.Watch{{Resource: "events", Expiry: tc.expiry}, {Resource: "configmaps"}}), harnessOpts{resolver: eventsResolver()})
			h.waitReady()
			h.src.apply(eventRes.GVR, coreEvent("shop", "web-1.a", "web-1", 1, "2026-11-28T15:00:00Z", "Normal"), false)
			h.src.apply(cmRes.GVR, cm("shop", "c", nil), false)
			rec := h.sinks["rec"]
			rec.waitFor(t, "2 added", func(e []*event.Event) bool { return count(e, event.Added.Type()) == 2 })
			h.src.remove(eventRes.GVR, "shop", "web-1.a", false)
			h.src.remove(cmRes.GVR, "shop", "c", false)
			evs := rec.waitFor(t, "the configmap deleted", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) >= 1 })
			waitForgotten(t, h, Key{GVR: eventRes.GVR, Namespace: "shop", Name: "web-1.a"})
			waitForgotten(t, h, Key{GVR: cmRes.GVR, Namespace: "shop", Name: "c"})
			evs = rec.got()
			var deletedEvents int
			for _, e := range evs {
				if e.Type == event.Deleted.Type() && e.Kind == "Event" {
					deletedEvents++
				}
			}
			if deletedEvents != tc.wantDeleted {
				t.Errorf("%d deleted Events, want %d:%s", deletedEvents, tc.wantDeleted, summary(evs))
			}
			if st := h.ex.Stats()["rec"]; st.Dropped != 0 || st.Retries != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

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
	if n := testutil.ToFloat64(h.ex.enrich.misses.WithLabelValues(MissNotCached)); n != 2 {
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
	if n := testutil.ToFloat64(h.ex.enrich.misses.WithLabelValues(MissUnresolved)); n != 2 {
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

func sinksFor(cfg *config.Config) map[string]sinks.Sink {
	out := map[string]sinks.Sink{}
	for _, s := range cfg.Sinks {
		out[s.Name] = &recorder{}
	}
	return out
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
