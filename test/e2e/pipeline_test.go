package e2e

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubefeed/kubefeed/sinks"
)

func cfgFor(rules string) string {
	return "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nwatch:\n" + rules + "sinks:\n  - name: rec\n    stdout: {}\n"
}

func TestConfigMapLifecycleEvents(t *testing.T) {
	ns := namespace(t, "lifecycle", nil)
	rec := &recorder{}
	startExporter(t, cfgFor("  - resource: configmaps\n    namespaces: [lifecycle]\n"), map[string]sinks.Sink{"rec": rec})
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()

	created, err := cms.Create(ctx, cm("a", nil, map[string]any{"k": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	created.Object["data"] = map[string]any{"k": "2", "new": "x"}
	updated, err := cms.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2)
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, 3)
	rec.quiet(t, 3, 300*time.Millisecond)

	uid := string(created.GetUID())
	want := []struct{ change, id string }{
		{"added", uid + "." + created.GetResourceVersion() + ".added"},
		{"modified", uid + "." + updated.GetResourceVersion() + ".modified"},
		{"deleted", ""},
	}
	for i, w := range want {
		e := evs[i]
		if e.change() != w.change {
			t.Fatalf("event %d: %s, want %s\n%s", i, e.change(), w.change, summary(evs))
		}
		if w.id != "" && e.ID != w.id {
			t.Errorf("event %d: id %s, want %s", i, e.ID, w.id)
		}
		if e.Subject != "/api/v1/namespaces/lifecycle/configmaps/a" || e.Kind != "ConfigMap" || e.APIVersion != "v1" {
			t.Errorf("event %d: subject %s kind %s apiversion %s", i, e.Subject, e.Kind, e.APIVersion)
		}
		if e.Data.Object["apiVersion"] != "v1" || e.Data.Object["kind"] != "ConfigMap" {
			t.Errorf("event %d: data.object lacks apiVersion/kind", i)
		}
		md := e.Data.Object["metadata"].(map[string]any)
		if _, ok := md["managedFields"]; ok {
			t.Errorf("event %d: data.object has managedFields", i)
		}
	}
	mod := evs[1]
	wantPatch := []map[string]any{
		{"op": "replace", "path": "/data/k", "value": "2"},
		{"op": "add", "path": "/data/new", "value": "x"},
	}
	if !reflect.DeepEqual(mod.Data.Patch, wantPatch) {
		t.Errorf("patch = %v, want %v", mod.Data.Patch, wantPatch)
	}
	if !reflect.DeepEqual(mod.Data.ChangedPaths, []string{"/data/k", "/data/new"}) {
		t.Errorf("changedPaths = %v", mod.Data.ChangedPaths)
	}
	if mod.Data.PreviousResourceVersion != created.GetResourceVersion() {
		t.Errorf("previousResourceVersion = %s, want %s", mod.Data.PreviousResourceVersion, created.GetResourceVersion())
	}
	del := evs[2]
	if del.UID != uid || del.Data.Object["data"].(map[string]any)["k"] != "2" {
		t.Errorf("deleted event does not carry the last state: %s", del.raw)
	}
	if del.Data.Recovered || evs[0].Data.Recovered {
		t.Errorf("live events marked recovered")
	}
}

func TestDeploymentScaleAndStatus(t *testing.T) {
	ns := namespace(t, "deploys", nil)
	rec := &recorder{}
	startExporter(t, cfgFor("  - resource: deploy\n    namespaces: [deploys]\n"), map[string]sinks.Sink{"rec": rec})
	cs, _ := clients(t)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{"observedGeneration":2,"replicas":3}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, 3)
	rec.quiet(t, 3, 300*time.Millisecond)

	if evs[0].Subject != "/apis/apps/v1/namespaces/deploys/deployments/web" || evs[0].APIVersion != "apps/v1" || evs[0].Kind != "Deployment" {
		t.Errorf("added: subject %s apiversion %s kind %s", evs[0].Subject, evs[0].APIVersion, evs[0].Kind)
	}
	scale := evs[1]
	// Scaling bumps metadata.generation too; the replicas change must be there.
	found := false
	for _, op := range scale.Data.Patch {
		if op["path"] == "/spec/replicas" && op["op"] == "replace" && op["value"] == float64(3) {
			found = true
		}
	}
	if !found {
		t.Errorf("scale patch lacks replace /spec/replicas 3: %v", scale.Data.Patch)
	}
	status := evs[2]
	if status.change() != "modified" || len(status.Data.ChangedPaths) == 0 {
		t.Fatalf("status update: %s %v", status.change(), status.Data.ChangedPaths)
	}
	for _, p := range status.Data.ChangedPaths {
		if !strings.HasPrefix(p, "/status") {
			t.Errorf("status update touches %s, want only /status paths: %v", p, status.Data.ChangedPaths)
		}
	}
}

func TestCustomResourceAppearingAfterStart(t *testing.T) {
	ns := namespace(t, "widgets", nil)
	rec := &recorder{}
	// The CRD may not exist yet: the rule is retried until it does.
	startExporter(t, cfgFor("  - resource: widgets.example.com\n    namespaces: [widgets]\n"), map[string]sinks.Sink{"rec": rec})
	ensureWidgetCRD(t)
	_, dyn := clients(t)
	ws := dyn.Resource(widgets).Namespace(ns)
	ctx := context.Background()
	// Created until the informer, started once the resource resolves, sees it.
	var w *unstructured.Unstructured
	var err error
	if w, err = ws.Create(ctx, widget("w1", map[string]any{"size": int64(1)}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The widget may predate the informer's initial list (skipped): touch it
	// until an event shows up, as a user's later change would.
	deadline := time.Now().Add(30 * time.Second)
	for len(rec.snapshot()) == 0 && time.Now().Before(deadline) {
		w.Object["spec"] = map[string]any{"size": w.Object["spec"].(map[string]any)["size"].(int64) + 1}
		if w, err = ws.Update(ctx, w, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	before := len(rec.snapshot())
	if before == 0 {
		t.Fatal("no event for the custom resource after its CRD appeared")
	}
	w.Object["spec"] = map[string]any{"size": int64(100)}
	if _, err := ws.Update(ctx, w, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, before+1)
	last := evs[len(evs)-1]
	if last.change() != "modified" || last.Kind != "Widget" || last.APIVersion != "example.com/v1" ||
		last.Subject != "/apis/example.com/v1/namespaces/widgets/widgets/w1" {
		t.Errorf("custom resource event: %s kind %s apiversion %s subject %s", last.change(), last.Kind, last.APIVersion, last.Subject)
	}
	if !reflect.DeepEqual(last.Data.ChangedPaths, []string{"/metadata/generation", "/spec/size"}) {
		t.Errorf("changedPaths = %v, want [/metadata/generation /spec/size]", last.Data.ChangedPaths)
	}
	if err := ws.Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	evs = rec.waitFor(t, before+2)
	if evs[len(evs)-1].change() != "deleted" {
		t.Errorf("last event %s, want deleted", evs[len(evs)-1].change())
	}
}

func TestDeleteCollectionAndRecreate(t *testing.T) {
	ns := namespace(t, "collection", nil)
	rec := &recorder{}
	startExporter(t, cfgFor("  - resource: configmaps\n    namespaces: [collection]\n    labelSelector: batch=one\n"), map[string]sinks.Sink{"rec": rec})
	cs, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("c%d", i), map[string]string{"batch": "one"}, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 5)
	if err := cs.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "batch=one"}); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, 10)
	deleted := map[string]int{}
	for _, e := range evs[5:] {
		if e.change() != "deleted" {
			t.Errorf("after deletecollection: %s %s", e.change(), e.Name)
		}
		deleted[e.Name]++
	}
	if len(deleted) != 5 {
		t.Errorf("deleted events per object: %v, want one for each of 5", deleted)
	}

	// Delete and recreate under the same name: deleted, then added, new uid.
	first, err := cms.Create(ctx, cm("same", map[string]string{"batch": "one"}, map[string]any{"v": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 11)
	if err := cms.Delete(ctx, "same", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := cms.Create(ctx, cm("same", map[string]string{"batch": "one"}, map[string]any{"v": "2"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs = rec.waitFor(t, 13)
	rec.quiet(t, 13, 300*time.Millisecond)
	if d, a := evs[11], evs[12]; d.change() != "deleted" || d.UID != string(first.GetUID()) || a.change() != "added" || a.UID != string(second.GetUID()) {
		t.Errorf("recreate: got %s(%s) %s(%s), want deleted(%s) added(%s)", d.change(), d.UID, a.change(), a.UID, first.GetUID(), second.GetUID())
	}
}
