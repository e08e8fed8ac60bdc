package exporter

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// audit6Resources: core, a named group, a CRD group with dots, and both
// Event resources (whose deletions a rule may skip).
func audit6Resources() []Resource {
	gv := func(g, v, res, kind string) Resource {
		return Resource{GVR: schema.GroupVersionResource{Group: g, Version: v, Resource: res}, GVK: schema.GroupVersionKind{Group: g, Version: v, Kind: kind}, Namespaced: true}
	}
	return []Resource{
		gv("", "v1", "configmaps", "ConfigMap"),
		gv("apps", "v1", "deployments", "Deployment"),
		gv("stable.example.com", "v1beta1", "widgets", "Widget"),
		gv("", "v1", "events", "Event"),
		gv("events.k8s.io", "v1", "events", "Event"),
	}
}

// audit6RuleSets are rule tables with what changes rendering: filters
// (that fail on odd objects), redaction, old objects, event types, label
// selectors (deletionRules), ignored paths and Events' expiry.
func audit6RuleSets(t *testing.T) [][]*rule {
	sets := [][]config.Watch{
		{{Resource: "configmaps"}},
		{
			{Resource: "configmaps", Filter: `object.data.k == "v1"`},
			{Resource: "configmaps", RedactPaths: []string{"/data/k", "/metadata/annotations/a"}, OldObject: true},
			{Resource: "configmaps", Events: []string{"DELETED"}, Expiry: config.ExpiryEmit},
		},
		{
			{Resource: "configmaps", LabelSelector: "app=a", IgnorePaths: []string{"/data/k"}, Expiry: config.ExpiryEmit},
			{Resource: "configmaps", LabelSelector: "app=b", OldObject: true},
			{Resource: "configmaps", Filter: `object.metadata.name.startsWith("n")`},
		},
	}
	var out [][]*rule
	for _, w := range sets {
		rules, err := compileRules(newConfig(w))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rules)
	}
	return out
}

// audit6Pool is a pool of immutable objects: ordinary ones of a few uids
// and versions (so that decide meets every case), and ones whose
// apiVersion, kind or metadata are missing, null, of another type, or
// another group's.
func audit6Pool(res Resource) []*unstructured.Unstructured {
	apiVersions := []any{absent6{}, nil, 5, "", res.APIVersion(), "v1", "apps/v1", "apps/v2", "stable.example.com/v1beta1", "stable.example.com/v1", "/v1", "apps/", "v1beta1", "example.com/v1beta1", "V1",
		res.APIVersion() + "1", res.APIVersion()[:len(res.APIVersion())-1], res.GVK.Group + res.GVK.Version, res.GVK.Group + "." + res.GVK.Version, "/" + res.GVK.Version, res.GVK.Version, res.GVK.Group, res.GVK.Group + "/"}
	kinds := []any{absent6{}, nil, 3, "", res.GVK.Kind, "ConfigMap", "Widget", "event"}
	metas := []any{absent6{}, nil, "x", []any{map[string]any{"uid": "a"}},
		map[string]any{"uid": 1, "resourceVersion": 2.5, "name": true},
		map[string]any{"uid": nil, "resourceVersion": nil},
		map[string]any{"uid": "", "resourceVersion": ""},
	}
	for _, uid := range []string{"a", "b", "c"} {
		for _, rv := range []string{"1", "2", "18446744073709551617"} {
			for _, app := range []string{"a", "b", ""} {
				md := map[string]any{"uid": uid, "resourceVersion": rv, "name": "n", "namespace": "ns"}
				if app != "" {
					md["labels"] = map[string]any{"app": app}
					md["annotations"] = map[string]any{"a": "secret-" + rv}
				}
				metas = append(metas, md)
			}
		}
	}
	var pool []*unstructured.Unstructured
	for i, md := range metas {
		for j, av := range apiVersions {
			for l, kind := range kinds {
				if (i+j+l)%3 != 0 && j > 5 && l > 4 && j < 15 { // keep the pool small, but every pair
					continue
				}
				o := map[string]any{"data": map[string]any{"k": fmt.Sprintf("v%d", (i+j)%3), "n": float64(l)}}
				set6(o, "apiVersion", av)
				set6(o, "kind", kind)
				set6(o, "metadata", md)
				pool = append(pool, &unstructured.Unstructured{Object: o})
			}
		}
	}
	return pool
}

type absent6 struct{}

func set6(m map[string]any, k string, v any) {
	if _, ok := v.(absent6); !ok {
		m[k] = v
	}
}

// TestAudit6PlanAsBefore runs plan and the pre-change plan (with its own
// render and withTypeMeta) on random inputs covering every path of decide
// and plan, and compares the events byte for byte (event.Marshal, fixed
// time), the changes, the filter errors and the record field by field.
func TestAudit6PlanAsBefore(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	ruleSets := audit6RuleSets(t)
	rng := rand.New(rand.NewPCG(6, 6))
	hit := map[string]int{}
	for _, res := range audit6Resources() {
		pool := audit6Pool(res)
		pick := func() *unstructured.Unstructured { return pool[rng.IntN(len(pool))] }
		record := func() *Record {
			if rng.IntN(4) == 0 {
				return nil
			}
			r := recordOf(pick())
			r.Rule = rng.IntN(5)
			r.Scope = "s"
			switch rng.IntN(6) {
			case 0:
				r.Object = nil // a checkpoint without state: deleted synthesizes one
			case 1:
				r.Provisional = true
			case 2:
				r.AtRest = true
			}
			return &r
		}
		for i := 0; i < 6000; i++ {
			rules := ruleSets[rng.IntN(len(ruleSets))]
			if n := rng.IntN(len(rules) + 1); n < len(rules) {
				rules = rules[n : n+1] // one rule only, or none of the set
			}
			last, attempted := record(), record()
			if attempted != nil && rng.IntN(2) == 0 {
				attempted = nil
			}
			var cur *unstructured.Unstructured
			if rng.IntN(3) > 0 {
				cur = pick()
				if last != nil && rng.IntN(2) == 0 {
					// The same incarnation: a resync, a modification or a
					// Provisional re-offer.
					for tries := 0; tries < 50 && string(cur.GetUID()) != last.UID; tries++ {
						cur = pick()
					}
				}
			}
			var tomb *tombstone
			if rng.IntN(2) == 0 {
				tomb = &tombstone{obj: pick(), recovered: rng.IntN(2) == 0}
				if last != nil && rng.IntN(2) == 0 && last.Object != nil {
					tomb.obj = last.Object
				}
			}
			c := current{obj: cur, rules: rules, res: res, scope: "scope-1"}
			recovered := rng.IntN(3) == 0
			k := Key{GVR: res.GVR, Namespace: "ns", Name: "n"}
			want := oldPlan6(newOrigin("clu"), k, last, attempted, c, tomb, recovered, now)
			got := plan(newOrigin("clu"), k, last, attempted, c, tomb, recovered, fixedTime(now), false)
			where := fmt.Sprintf("%s #%d (last %+v, attempted %+v, cur %v, tomb %v)", res.GVR, i, last, attempted, cur, tomb)
			compareOutcome6(t, where, got, want)
			for _, ch := range got.changes {
				hit[pathOf6(ch, c, last, tomb)]++
			}
			for _, ev := range got.events {
				hit["event "+ev.Type]++
			}
			if t.Failed() {
				return
			}
		}
	}
	for _, p := range []string{"added", "modified", "deleted with tombstone", "deleted from last state", "deleted synthesized", "uid change", "retraction of another incarnation", "provisional re-offer", "provisional retraction", "event io.kubefeed.resource.added", "event io.kubefeed.resource.modified", "event io.kubefeed.resource.deleted"} {
		if hit[p] == 0 {
			t.Errorf("no case took the path %q: %v", p, hit)
		}
	}
	t.Logf("paths: %v", hit)
}

// pathOf6 names the decide/plan path a change came from.
func pathOf6(ch change, c current, last *Record, tomb *tombstone) string {
	switch {
	case ch.kind == event.Modified:
		return "modified"
	case ch.kind == event.Added && last != nil && last.Provisional:
		return "provisional re-offer"
	case ch.kind == event.Added && last != nil:
		return "uid change"
	case ch.kind == event.Added:
		return "added"
	case last == nil || string(ch.obj.GetUID()) != last.UID:
		return "retraction of another incarnation"
	case last.Provisional:
		return "provisional retraction"
	case tomb != nil && ch.obj == tomb.obj:
		return "deleted with tombstone"
	case last.Object == nil:
		return "deleted synthesized"
	default:
		return "deleted from last state"
	}
}

func compareOutcome6(t *testing.T, where string, got, want outcome) {
	t.Helper()
	if got.filterErrors != want.filterErrors || got.forget != want.forget {
		t.Errorf("%s: filterErrors %d forget %v, want %d %v", where, got.filterErrors, got.forget, want.filterErrors, want.forget)
	}
	if len(got.changes) != len(want.changes) {
		t.Fatalf("%s: %d changes, want %d", where, len(got.changes), len(want.changes))
	}
	for i := range got.changes {
		g, w := got.changes[i], want.changes[i]
		if g.kind != w.kind || g.recovered != w.recovered || g.rule != w.rule || g.prev != w.prev || fmt.Sprint(g.obj) != fmt.Sprint(w.obj) {
			t.Errorf("%s: change %d = %+v, want %+v", where, i, g, w)
		}
	}
	if len(got.events) != len(want.events) {
		t.Fatalf("%s: %d events, want %d", where, len(got.events), len(want.events))
	}
	for i := range got.events {
		gb, gerr := event.Marshal(got.events[i])
		wb, werr := event.Marshal(want.events[i])
		if (gerr == nil) != (werr == nil) || !bytes.Equal(gb, wb) {
			t.Errorf("%s: event %d\n got %s (%v)\nwant %s (%v)", where, i, gb, gerr, wb, werr)
		}
	}
	switch {
	case (got.record == nil) != (want.record == nil):
		t.Errorf("%s: record %+v, want %+v", where, got.record, want.record)
	case got.record != nil && *got.record != *want.record:
		t.Errorf("%s: record %+v, want %+v", where, *got.record, *want.record)
	}
}
