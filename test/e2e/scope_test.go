package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/sinks"
)

func TestScopingAdmitsExactlyTheRightObjects(t *testing.T) {
	for _, ns := range []string{"scope-a", "scope-b", "scope-x"} {
		namespace(t, ns, nil)
	}
	byLabel, byField, byNS, byExclude := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	cfg := `apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - resource: configmaps
    labelSelector: tier=front
    sinks: [label]
  - resource: configmaps
    fieldSelector: metadata.name=pick
    sinks: [field]
  - resource: configmaps
    namespaces: [scope-a, scope-b]
    sinks: [ns]
  - resource: configmaps
    excludeNamespaces: [scope-a, scope-b, default, kube-system, kube-public, kube-node-lease]
    sinks: [exclude]
  - resource: cm
    namespaces: [scope-b]
    sinks: [ns]
sinks:
  - {name: label, stdout: {}}
  - {name: field, stdout: {}}
  - {name: ns, stdout: {}}
  - {name: exclude, stdout: {}}
`
	r := startExporter(t, cfg, map[string]sinks.Sink{"label": byLabel, "field": byField, "ns": byNS, "exclude": byExclude})
	// Rules 3 and 5 ask for the same scope (configmaps in scope-b): one informer.
	scopes := r.ex.Scopes()
	if len(scopes) != 5 {
		t.Errorf("scopes = %d %v, want 5 (scope-b shared by two rules)", len(scopes), scopes)
	}
	_, dyn := clients(t)
	ctx := context.Background()
	objs := []struct {
		ns, name string
		labels   map[string]string
	}{
		{"scope-a", "front", map[string]string{"tier": "front"}},
		{"scope-a", "pick", nil},
		{"scope-b", "other", nil},
		{"scope-x", "xonly", nil},
		{"scope-x", "pick", map[string]string{"tier": "front"}},
	}
	for _, o := range objs {
		if _, err := dyn.Resource(configMaps).Namespace(o.ns).Create(ctx, cm(o.name, o.labels, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[*recorder][]string{
		byLabel:   {"scope-a/front", "scope-x/pick"},
		byField:   {"scope-a/pick", "scope-x/pick"},
		byNS:      {"scope-a/front", "scope-a/pick", "scope-b/other"},
		byExclude: {"scope-x/pick", "scope-x/xonly"},
	}
	for rec, names := range want {
		evs := rec.waitFor(t, len(names))
		rec.quiet(t, len(names), 300*time.Millisecond)
		var gotNames []string
		for _, e := range evs {
			gotNames = append(gotNames, e.Namespace+"/"+e.Name)
		}
		sort.Strings(gotNames)
		if fmt.Sprint(gotNames) != fmt.Sprint(names) {
			t.Errorf("sink got %v, want %v", gotNames, names)
		}
	}
}

func TestResyncEmitsNothingForUnchangedObjects(t *testing.T) {
	ns := namespace(t, "resync", nil)
	_, dyn := clients(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm(fmt.Sprintf("r%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	startExporter(t, "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nresyncPeriod: 200ms\nwatch:\n  - resource: configmaps\n    namespaces: [resync]\nsinks:\n  - {name: rec, stdout: {}}\n",
		map[string]sinks.Sink{"rec": rec})
	// Several resync periods pass over 20 unchanged objects: nothing.
	rec.quiet(t, 0, 1500*time.Millisecond)
	if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm("fresh", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	rec.quiet(t, 1, time.Second)
}

func TestInitialListEmit(t *testing.T) {
	ns := namespace(t, "initial", nil)
	_, dyn := clients(t)
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm(fmt.Sprintf("i%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	emit, skip := &recorder{}, &recorder{}
	startExporter(t, `apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - {resource: configmaps, namespaces: [initial], initialList: emit, sinks: [emit]}
  - {resource: configmaps, namespaces: [initial], sinks: [skip]}
sinks:
  - {name: emit, stdout: {}}
  - {name: skip, stdout: {}}
`, map[string]sinks.Sink{"emit": emit, "skip": skip})
	evs := emit.waitFor(t, 7)
	for _, e := range evs {
		if e.change() != "added" {
			t.Errorf("initial list emitted %s", e.change())
		}
	}
	skip.quiet(t, 0, 300*time.Millisecond)
	emit.quiet(t, 7, 0)
}

func TestFailingSinkStillDeliversInOrder(t *testing.T) {
	ns := namespace(t, "flaky", nil)
	flaky := &recorder{failFirst: 5, failEvery: 3}
	healthy := &recorder{}
	startExporter(t, cfgFor("  - resource: configmaps\n    namespaces: [flaky]\n")+"  - {name: healthy, stdout: {}}\n",
		map[string]sinks.Sink{"rec": flaky, "healthy": healthy})
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()
	const objects, updates = 6, 8
	for i := 0; i < objects; i++ {
		o, err := cms.Create(ctx, cm(fmt.Sprintf("f%d", i), nil, map[string]any{"n": "0"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for j := 1; j <= updates; j++ {
			o.Object["data"] = map[string]any{"n": fmt.Sprint(j)}
			if o, err = cms.Update(ctx, o, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every object ends at its last version on both sinks; on each, the
	// resourceVersions of one object only grow, and modified events chain.
	for name, rec := range map[string]*recorder{"flaky": flaky, "healthy": healthy} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			final := map[string]string{}
			for _, e := range rec.snapshot() {
				final[e.Name] = e.Data.Object["data"].(map[string]any)["n"].(string)
			}
			done := len(final) == objects
			for _, v := range final {
				done = done && v == fmt.Sprint(updates)
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: final states %v, want all %d", name, final, updates)
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkOrder(t, name, rec.snapshot())
	}
	if flaky.calls <= len(flaky.events) {
		t.Errorf("flaky sink: %d calls for %d events: the failures were not exercised", flaky.calls, len(flaky.events))
	}
}

// checkOrder asserts per-object resourceVersion order and that each modified
// event starts where the previous event of its object ended.
func checkOrder(t *testing.T, sink string, evs []got) {
	t.Helper()
	last := map[string]got{}
	for _, e := range evs {
		prev, ok := last[e.Subject]
		if ok && e.change() == "modified" && e.Data.PreviousResourceVersion != prev.ResourceVersion {
			t.Errorf("%s: %s modified from %s, but the previous event was rv %s", sink, e.Subject, e.Data.PreviousResourceVersion, prev.ResourceVersion)
		}
		if ok && prev.UID == e.UID && rvLess(e.ResourceVersion, prev.ResourceVersion) {
			t.Errorf("%s: %s rv %s after rv %s", sink, e.Subject, e.ResourceVersion, prev.ResourceVersion)
		}
		last[e.Subject] = e
	}
}

func rvLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
