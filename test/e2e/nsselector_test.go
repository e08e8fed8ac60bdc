package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/sinks"
)

func scopesIn(r *running, ns string) int {
	n := 0
	for _, s := range r.ex.Scopes() {
		if strings.Contains(s, "-n "+ns) {
			n++
		}
	}
	return n
}

func waitScopes(t *testing.T, r *running, ns string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for scopesIn(r, ns) != want {
		if time.Now().After(deadline) {
			t.Fatalf("scopes in %s: %d, want %d (%v)", ns, scopesIn(r, ns), want, r.ex.Scopes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNamespaceSelectorFollowsLabelsLive(t *testing.T) {
	in := namespace(t, "sel-in", map[string]string{"feed": "on"})
	out := namespace(t, "sel-out", nil)
	cs, dyn := clients(t)
	ctx := context.Background()
	// Objects that exist before their namespace is selected: no storm.
	for i := 0; i < 5; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(out).Create(ctx, cm(fmt.Sprintf("pre%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	r := startExporter(t, cfgFor("  - resource: configmaps\n    namespaceSelector: feed=on\n"), map[string]sinks.Sink{"rec": rec})
	if scopesIn(r, in) != 1 || scopesIn(r, out) != 0 {
		t.Fatalf("scopes at start: %v", r.ex.Scopes())
	}
	create := func(ns, name string) {
		t.Helper()
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm(name, nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label := func(ns, value string) {
		t.Helper()
		patch := `{"metadata":{"labels":{"feed":` + value + `}}}`
		if _, err := cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(in, "a")
	create(out, "ignored")
	rec.waitFor(t, 1)
	rec.quiet(t, 1, 300*time.Millisecond)

	// Labelling starts the namespace's events, without its existing objects.
	label(out, `"on"`)
	waitScopes(t, r, out, 1)
	rec.quiet(t, 1, 500*time.Millisecond)
	create(out, "b")
	evs := rec.waitFor(t, 2)
	if evs[1].Namespace != out || evs[1].Name != "b" {
		t.Errorf("after labelling: %s/%s", evs[1].Namespace, evs[1].Name)
	}

	// Unlabelling stops them; leaving the scope is not a deletion.
	label(out, "null")
	waitScopes(t, r, out, 0)
	create(out, "c")
	rec.quiet(t, 2, 500*time.Millisecond)

	// Deleting a selected namespace stops its informers.
	if err := cs.CoreV1().Namespaces().Delete(ctx, in, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without a namespace controller the namespace stays Terminating; the
	// finalizer is what keeps it. Remove it as the controller would.
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, in, metav1.GetOptions{})
	if err == nil {
		nsObj.Spec.Finalizers = nil
		if _, err := cs.CoreV1().Namespaces().Finalize(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitScopes(t, r, in, 0)
}
