package plan

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/internal/golden"
)

func planRules(t *testing.T, watch ...config.Watch) []*Rule {
	t.Helper()
	rules, err := CompileRules(newConfig(watch))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestPlan(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "configmaps"})
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	rec := func(uid, rv string) *state.Record { r := recordOf(obj(uid, rv)); r.Rule = 1; return &r }
	withData := func(uid, rv, v string) *unstructured.Unstructured {
		u := obj(uid, rv)
		u.Object["data"] = map[string]any{"k": v}
		return u
	}
	for _, tc := range []struct {
		name      string
		last      *state.Record
		attempted *state.Record
		cur       *unstructured.Unstructured
		tomb      *Tombstone
		recovered bool
		want      []string // event types, then "uid@rv" of each
		wantUIDs  []string
		forget    bool
	}{
		{name: "added", cur: obj("a", "1"), want: []string{"added"}, wantUIDs: []string{"a"}},
		{name: "resync", last: rec("a", "1"), cur: obj("a", "1")},
		{name: "modified", last: &state.Record{UID: "a", ResourceVersion: "1", Object: withData("a", "1", "x"), Rule: 1}, cur: withData("a", "2", "y"), want: []string{"modified"}, wantUIDs: []string{"a"}},
		{name: "modified, nothing visible (generation only)", last: &state.Record{UID: "a", ResourceVersion: "1", Object: obj("a", "1"), Rule: 1}, cur: obj("a", "2")},
		{name: "deleted", last: rec("a", "1"), want: []string{"deleted"}, wantUIDs: []string{"a"}, forget: true},
		{name: "uid change", last: rec("a", "1"), cur: obj("b", "3"), want: []string{"deleted", "added"}, wantUIDs: []string{"a", "b"}},
		// A lost ack across a uid change: b was sent but not acknowledged,
		// then deleted too. The sink may hold b: both deletions go out.
		{name: "lost ack of another incarnation, then gone", last: rec("a", "1"), attempted: rec("b", "3"), want: []string{"deleted", "deleted"}, wantUIDs: []string{"a", "b"}, forget: true},
		{name: "lost ack of another incarnation, then a third", last: rec("a", "1"), attempted: rec("b", "3"), cur: obj("c", "5"), want: []string{"deleted", "deleted", "added"}, wantUIDs: []string{"a", "b", "c"}},
		{name: "lost ack, never acknowledged, gone", attempted: rec("b", "3"), want: []string{"deleted"}, wantUIDs: []string{"b"}, forget: true},
		{name: "lost ack of the same incarnation is not retracted", last: rec("a", "1"), attempted: rec("a", "2"), cur: obj("a", "2"), want: nil},
		{name: "recovered", cur: obj("a", "1"), recovered: true, want: []string{"added"}, wantUIDs: []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := Current{Obj: tc.cur, Rules: rules, Res: cmRes, Scope: "configmaps"}
			out := Compute(NewOrigin("c"), k, tc.last, tc.attempted, cur, tc.tomb, tc.recovered, fixedTime(time.Unix(0, 0)), true)
			if len(out.Events) != len(tc.want) {
				t.Fatalf("%d events%s, want %v", len(out.Events), summary(out.Events), tc.want)
			}
			for i, ev := range out.Events {
				if ev.Type != "io.kubefeed.resource."+tc.want[i] || ev.UID != tc.wantUIDs[i] {
					t.Errorf("event %d: %s uid %s, want %s uid %s", i, ev.Type, ev.UID, tc.want[i], tc.wantUIDs[i])
				}
				if ev.Data.(*event.ChangeData).Recovered != (tc.recovered || ev.Type == event.Deleted.Type() && tc.tomb == nil) {
					t.Errorf("event %d recovered = %v", i, ev.Data.(*event.ChangeData).Recovered)
				}
			}
			if out.Forget != tc.forget {
				t.Errorf("forget = %v, want %v", out.Forget, tc.forget)
			}
			if tc.cur != nil && (out.Record == nil || out.Record.UID != string(tc.cur.GetUID()) || out.Record.Rule != 1) {
				t.Errorf("record = %+v, want the current state by rule 1", out.Record)
			}
		})
	}
}

// The record keeps the rule that rendered it and its redaction, so that
// the checkpoint stores only redacted state.
func TestPlanRecordCarriesRedaction(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "secrets"})
	s := obj("a", "1")
	s.Object["data"] = map[string]any{"pw": "c2VjcmV0"}
	out := Compute(NewOrigin("c"), state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "x"}, nil, nil, Current{Obj: s, Rules: rules, Res: secretRes}, nil, false, fixedTime(time.Now()), true)
	if out.Record == nil || out.Record.Redact == nil {
		t.Fatalf("record %+v has no redactor", out.Record)
	}
	if got := out.Record.Redact.Object(out.Record.Object.Object)["data"].(map[string]any)["pw"]; got == "c2VjcmV0" {
		t.Error("the record's redaction leaves the value")
	}
}

// planSweepResources: core, a named group, a CRD group with dots, and both
// Event resources (whose deletions a rule may skip).
func planSweepResources() []resource.Resource {
	gv := func(g, v, res, kind string) resource.Resource {
		return resource.Resource{GVR: schema.GroupVersionResource{Group: g, Version: v, Resource: res}, GVK: schema.GroupVersionKind{Group: g, Version: v, Kind: kind}, Namespaced: true}
	}
	return []resource.Resource{
		gv("", "v1", "configmaps", "ConfigMap"),
		gv("apps", "v1", "deployments", "Deployment"),
		gv("stable.example.com", "v1beta1", "widgets", "Widget"),
		gv("", "v1", "events", "Event"),
		gv("events.k8s.io", "v1", "events", "Event"),
	}
}

// planSweepRuleSets are rule tables with what changes rendering: filters
// (that fail on odd objects), redaction, old objects, event types, label
// selectors (deletionRules), ignored paths and Events' expiry.
func planSweepRuleSets(t *testing.T) [][]*Rule {
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
	var out [][]*Rule
	for _, w := range sets {
		rules, err := CompileRules(newConfig(w))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rules)
	}
	return out
}

// planSweepPool is a pool of immutable objects: ordinary ones of a few uids
// and versions (so that decide meets every case), and ones whose
// apiVersion, kind or metadata are missing, null, of another type, or
// another group's.
func planSweepPool(res resource.Resource) []*unstructured.Unstructured {
	apiVersions := []any{absent{}, nil, 5, "", res.APIVersion(), "v1", "apps/v1", "apps/v2", "stable.example.com/v1beta1", "stable.example.com/v1", "/v1", "apps/", "v1beta1", "example.com/v1beta1", "V1",
		res.APIVersion() + "1", res.APIVersion()[:len(res.APIVersion())-1], res.GVK.Group + res.GVK.Version, res.GVK.Group + "." + res.GVK.Version, "/" + res.GVK.Version, res.GVK.Version, res.GVK.Group, res.GVK.Group + "/"}
	kinds := []any{absent{}, nil, 3, "", res.GVK.Kind, "ConfigMap", "Widget", "event"}
	metas := []any{absent{}, nil, "x", []any{map[string]any{"uid": "a"}},
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
				setUnlessAbsent(o, "apiVersion", av)
				setUnlessAbsent(o, "kind", kind)
				setUnlessAbsent(o, "metadata", md)
				pool = append(pool, &unstructured.Unstructured{Object: o})
			}
		}
	}
	return pool
}

// TestPlanOutcomesAsGolden runs plan on seeded random inputs covering
// every path of decide and plan, over resources, rule tables and objects
// with odd type metadata, and compares what it renders with
// testdata/plan.golden: the events byte for byte (event.Marshal, fixed
// time), the changes, the filter errors and the record field by field.
func TestPlanOutcomesAsGolden(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	ruleSets := planSweepRuleSets(t)
	rng := rand.New(rand.NewPCG(6, 6))
	hit := map[string]int{}
	g := golden.New("plan of seeded random inputs (TestPlanOutcomesAsGolden; go test -run TestPlanOutcomesAsGolden -update rewrites it).\n"+
		"Objects are named by the input they are (cur, tomb, last, attempted) or shown as JSON.", 15, 1, 250)
	for _, res := range planSweepResources() {
		g.StartSection(res.GVR.String())
		pool := planSweepPool(res)
		pick := func() *unstructured.Unstructured { return pool[rng.IntN(len(pool))] }
		record := func() *state.Record {
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
			var tomb *Tombstone
			if rng.IntN(2) == 0 {
				tomb = &Tombstone{Obj: pick(), Recovered: rng.IntN(2) == 0}
				if last != nil && rng.IntN(2) == 0 && last.Object != nil {
					tomb.Obj = last.Object
				}
			}
			c := Current{Obj: cur, Rules: rules, Res: res, Scope: "scope-1"}
			recovered := rng.IntN(3) == 0
			k := state.Key{GVR: res.GVR, Namespace: "ns", Name: "n"}
			got := Compute(NewOrigin("clu"), k, last, attempted, c, tomb, recovered, fixedTime(now), false)
			g.Add(renderPlanCase(i, last, attempted, c, tomb, recovered, got))
			for _, ch := range got.Changes {
				hit[planPath(ch, c, last, tomb)]++
			}
			for _, ev := range got.Events {
				hit["event "+ev.Type]++
			}
		}
	}
	g.Check(t, "plan")
	for _, p := range []string{"added", "modified", "deleted with tombstone", "deleted from last state", "deleted synthesized", "uid change", "retraction of another incarnation", "provisional re-offer", "provisional retraction", "event io.kubefeed.resource.added", "event io.kubefeed.resource.modified", "event io.kubefeed.resource.deleted"} {
		if hit[p] == 0 {
			t.Errorf("no case took the path %q: %v", p, hit)
		}
	}
	t.Logf("paths: %v", hit)
}

// renderPlanCase is one case of TestPlanOutcomesAsGolden as the golden
// file holds it: its inputs, then each change, each event's bytes, the
// record, forget and the filter errors.
func renderPlanCase(i int, last, attempted *state.Record, c Current, tomb *Tombstone, recovered bool, out Outcome) string {
	var b strings.Builder
	objName := func(o *unstructured.Unstructured) string {
		switch {
		case o == nil:
			return "nil"
		case o == c.Obj:
			return "cur"
		case tomb != nil && o == tomb.Obj:
			return "tomb"
		case last != nil && o == last.Object:
			return "last"
		case attempted != nil && o == attempted.Object:
			return "attempted"
		}
		j, err := json.Marshal(o.Object)
		if err != nil {
			return fmt.Sprintf("%v (%v)", o.Object, err)
		}
		return string(j)
	}
	json1 := func(o *unstructured.Unstructured) string {
		if o == nil {
			return "nil"
		}
		j, err := json.Marshal(o.Object)
		if err != nil {
			return fmt.Sprintf("%v (%v)", o.Object, err)
		}
		return string(j)
	}
	redactName := func(r *filters.Redactor) string {
		if r == nil {
			return "nil"
		}
		for _, rl := range c.Rules {
			if rl.redact == r { // as redactor built it (reading it builds nothing)
				return fmt.Sprintf("rule %d's", rl.Index+1)
			}
		}
		return "another"
	}
	rec := func(r *state.Record) string {
		if r == nil {
			return "nil"
		}
		s := fmt.Sprintf("{uid=%q rv=%q scope=%q rule=%d redact=%s atRest=%v provisional=%v deleting=%v obj=%s", r.UID, r.ResourceVersion, r.Scope, r.Rule, redactName(r.Redact), r.AtRest, r.Provisional, r.Deleting, objName(r.Object))
		if r.Sent != nil {
			s += fmt.Sprintf(" sent=%+v", *r.Sent)
		}
		return s + "}"
	}
	var rules []string
	for _, rl := range c.Rules {
		rules = append(rules, strconv.Itoa(rl.Index+1))
	}
	fmt.Fprintf(&b, "case %d rules=[%s] recovered=%v\n", i, strings.Join(rules, " "), recovered)
	fmt.Fprintf(&b, "  cur %s\n", json1(c.Obj))
	fmt.Fprintf(&b, "  last %s\n", rec(last))
	if last != nil && last.Object != nil {
		fmt.Fprintf(&b, "  last.Object %s\n", json1(last.Object))
	}
	fmt.Fprintf(&b, "  attempted %s\n", rec(attempted))
	if attempted != nil && attempted.Object != nil {
		fmt.Fprintf(&b, "  attempted.Object %s\n", json1(attempted.Object))
	}
	if tomb != nil {
		fmt.Fprintf(&b, "  tomb recovered=%v %s\n", tomb.Recovered, json1(tomb.Obj))
	}
	for _, ch := range out.Changes {
		fmt.Fprintf(&b, "  -> change %s recovered=%v rule=%d obj=%s prev=%s\n", ch.Kind, ch.recovered, ch.rule, objName(ch.Obj), rec(&ch.prev))
	}
	for _, ev := range out.Events {
		bs, err := event.Marshal(ev)
		if err != nil {
			fmt.Fprintf(&b, "  -> event error %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "  -> event %s\n", bs)
	}
	fmt.Fprintf(&b, "  -> record %s forget=%v filterErrors=%d\n", rec(out.Record), out.Forget, out.FilterErrors)
	return b.String()
}

// planPath names the decide/plan path a change came from.
func planPath(ch Change, c Current, last *state.Record, tomb *Tombstone) string {
	switch {
	case ch.Kind == event.Modified:
		return "modified"
	case ch.Kind == event.Added && last != nil && last.Provisional:
		return "provisional re-offer"
	case ch.Kind == event.Added && last != nil:
		return "uid change"
	case ch.Kind == event.Added:
		return "added"
	case last == nil || string(ch.Obj.GetUID()) != last.UID:
		return "retraction of another incarnation"
	case last.Provisional:
		return "provisional retraction"
	case tomb != nil && ch.Obj == tomb.Obj:
		return "deleted with tombstone"
	case last.Object == nil:
		return "deleted synthesized"
	default:
		return "deleted from last state"
	}
}

// fixedTime is an Observer for which everything was observed at t.
type fixedTime time.Time

func (f fixedTime) At(string, string, bool) time.Time { return time.Time(f) }

// An object whose later version's send failed (the sink may hold it: a
// lost ack, a server that stored it after the ack timed out) and that is
// then gone without a final state from the watch is deleted with that
// later version, never with an older one than the sink may have; the
// watch's final state, when known, still wins.
func TestInferredDeletionCarriesTheVersionWhoseSendFailed(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "configmaps"})
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	rec := func(uid, rv string) *state.Record { r := recordOf(obj(uid, rv)); r.Rule = 1; return &r }
	deleting := rec("a", "1")
	deleting.Deleting = true
	for _, c := range []struct {
		name      string
		last      *state.Record
		attempted *state.Record
		tomb      *Tombstone
		wantRV    string
	}{
		{"inferred, after a failed send", rec("a", "1"), rec("a", "2833"), nil, "2833"},
		{"inferred, no failed send", rec("a", "1"), nil, nil, "1"},
		{"the watch's final state", rec("a", "1"), rec("a", "2833"), &Tombstone{Obj: obj("a", "2900")}, "2900"},
		{"written ahead as Deleting", deleting, rec("a", "2833"), nil, "1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := Compute(NewOrigin("c"), k, c.last, c.attempted, Current{Rules: rules, Res: cmRes, Scope: "configmaps"}, c.tomb, false, fixedTime(time.Unix(0, 0)), true)
			if len(out.Events) != 1 || out.Events[0].Type != event.Deleted.Type() || out.Events[0].ResourceVersion != c.wantRV {
				t.Fatalf("events%s, want one deletion at rv %s", summary(out.Events), c.wantRV)
			}
		})
	}
}
