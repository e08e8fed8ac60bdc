package exporter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

var (
	eventRes   = resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Event"}, Namespaced: true}
	eventV1Res = resource.Resource{GVR: schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}, GVK: schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"}, Namespaced: true}
	podRes     = resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespaced: true}
	nodeRes    = resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}}
)

// ResolveKind knows pods, nodes and the resources of newResolver.
func (r *fakeResolver) ResolveKind(gk schema.GroupKind) (resource.Resource, error) {
	for _, res := range []resource.Resource{podRes, nodeRes, cmRes, deployRes} {
		if res.GVK.GroupKind() == gk {
			return res, nil
		}
	}
	return resource.Resource{}, fmt.Errorf("kind %s not found", gk)
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
func waitForgotten(t *testing.T, h *harness, k state.Key) {
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
			waitForgotten(t, h, state.Key{GVR: eventRes.GVR, Namespace: "shop", Name: "web-1.a"})
			waitForgotten(t, h, state.Key{GVR: cmRes.GVR, Namespace: "shop", Name: "c"})
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

func sinksFor(cfg *config.Config) map[string]sinks.Sink {
	out := map[string]sinks.Sink{}
	for _, s := range cfg.Sinks {
		out[s.Name] = &recorder{}
	}
	return out
}
