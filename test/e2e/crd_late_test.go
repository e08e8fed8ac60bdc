package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
)

var (
	crdsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gadgets = schema.GroupVersionResource{Group: "late.example.com", Version: "v1", Resource: "gadgets"}
)

const gadgetCRD = "gadgets.late.example.com"

// createGadgetCRD creates gadgets.late.example.com, a CRD only this test
// uses, and deletes it when the test ends.
func createGadgetCRD(t *testing.T) { createLateCRD(t, "late.example.com") }

// createLateCRD creates gadgets.<group> (served) and deletes it when the
// test ends.
func createLateCRD(t *testing.T, group string) {
	t.Helper()
	_, dyn := clients(t)
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "gadgets." + group},
		"spec": map[string]any{
			"group": group,
			"scope": "Namespaced",
			"names": map[string]any{"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdsGVR).Create(context.Background(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(crdsGVR).Delete(context.Background(), "gadgets."+group, metav1.DeleteOptions{})
	})
	waitServed(t, group, true)
}

// serveGadgets sets the CRD's only version served or not: unserved, the
// resource leaves discovery and its API, while its objects stay in etcd.
func serveGadgets(t *testing.T, served bool) {
	t.Helper()
	_, dyn := clients(t)
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/versions/0/served","value":%t}]`, served)
	if _, err := dyn.Resource(crdsGVR).Patch(context.Background(), gadgetCRD, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("set served=%t: %v", served, err)
	}
	waitServed(t, "late.example.com", served)
}

// waitServed waits until discovery lists gadgets.<group> (or no longer does).
func waitServed(t *testing.T, group string, served bool) {
	t.Helper()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cp.Config())
	deadline := time.Now().Add(60 * time.Second)
	for {
		rl, err := dc.ServerResourcesForGroupVersion(group + "/v1")
		listed := false
		if err == nil {
			for _, r := range rl.APIResources {
				listed = listed || r.Name == "gadgets"
			}
		} else if !apierrors.IsNotFound(err) {
			t.Fatalf("discovery: %v", err)
		}
		if listed == served {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gadgets listed in discovery: %t after 60s, want %t", listed, served)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func gadget(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "late.example.com/v1", "kind": "Gadget", "spec": spec}}
	u.SetName(name)
	return u
}

// A rule for a CRD resource that is not served when kubefeed starts, with
// a file checkpoint, and changes made while kubefeed was down:
//
//   - run 1 starts before the CRD exists; the CRD is created and kubefeed
//     resolves it late; gadgets g1..g3 are created and delivered; stop.
//   - while it is down, g1 is deleted, g2 changed, g4 created; then the
//     CRD's version is set served: false, so that the resource is not in
//     discovery (as with discovery lag, or a CRD being upgraded) while its
//     objects stay in etcd.
//   - run 2 starts with the resource unresolved: the checkpoint records of
//     its scope must wait (parked), not be forgotten. Then the version is
//     served again; kubefeed resolves it and compares the list with the
//     parked records.
//
// It proves, against a real API server, that deletions and changes made
// while kubefeed was down are recovered for a scope that appears after
// start (restore.go's parked records): one restart gap marker, then
// recovered deleted g1, modified g2, added g4, and nothing for g3. Were the
// records forgotten, g1's deletion would be lost and g2, g4 silently
// taken as the initial list. exporter/core2_test.go
// TestRestoreWaitsForLateResource covers the same logic with a fake.
func TestCRDResolvedLateRecoversChangesMadeWhileDown(t *testing.T) {
	ns := namespace(t, "crdlate", nil)
	dir := t.TempDir()
	cfg := writeFile(t, "c.yaml", fileCheckpointConfig(dir, "  - {resource: "+gadgetCRD+", namespaces: [crdlate]}\n"))
	events := filepath.Join(dir, "events.jsonl")
	_, dyn := clients(t)
	gs := dyn.Resource(gadgets).Namespace(ns)
	ctx := context.Background()

	p := startKubefeedReady(t, cfg)
	p.waitLogContains(t, "resource not available yet")
	createGadgetCRD(t)
	// The resolver retries every 10s. With initialList: skip, gadgets that
	// exist when the scope first lists are its baseline: create them once
	// it has synced.
	p.waitLogContains(t, "resource appeared; watching")
	p.waitReady(t)
	for _, n := range []string{"g1", "g2", "g3"} {
		if _, err := gs.Create(ctx, gadget(n, map[string]any{"v": int64(1)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFileEvents(t, events, "g1..g3 added", func(evs []got) bool {
		return has(evs, "added", "g1") && has(evs, "added", "g2") && has(evs, "added", "g3")
	})
	if code := p.term(time.Minute); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}

	if err := gs.Delete(ctx, "g1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Patch(ctx, "g2", types.MergePatchType, []byte(`{"spec":{"v":2}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Create(ctx, gadget("g4", map[string]any{"v": int64(1)}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serveGadgets(t, false)
	before := len(fileEvents(t, events))

	p = startKubefeedReady(t, cfg)
	p.waitLogContains(t, "resource not available yet")
	serveGadgets(t, true)
	p.waitLogContains(t, "resource appeared; watching")
	evs := waitFileEvents(t, events, "the changes made while down", func(evs []got) bool {
		return has(evs[before:], "deleted", "g1") && has(evs[before:], "modified", "g2") && has(evs[before:], "added", "g4")
	})
	// Let anything else that would come arrive (a late g3 event, a second gap).
	time.Sleep(3 * time.Second)
	evs = fileEvents(t, events)[before:]
	var gaps, got []string
	for _, e := range evs {
		if e.Type == "io.kubefeed.gap" {
			var g struct {
				Data struct{ Reason string } `json:"data"`
			}
			_ = jsonUnmarshal(e.raw, &g)
			gaps = append(gaps, g.Data.Reason)
			continue
		}
		got = append(got, e.change()+" "+e.Name)
		if !e.Data.Recovered {
			t.Errorf("%s %s after the restart is not marked recovered", e.change(), e.Name)
		}
		if e.Name == "g2" && !hasOp(e.Data.Patch, "replace", "/spec/v", float64(2)) {
			t.Errorf("g2's recovered modification: patch %v, want replace /spec/v 2", e.Data.Patch)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != "[added g4 deleted g1 modified g2]" {
		t.Errorf("events after the restart %v, want [added g4 deleted g1 modified g2]:\n%s", got, summary(evs))
	}
	if fmt.Sprint(gaps) != "[restart]" || evs[0].Type != "io.kubefeed.gap" {
		t.Errorf("gap markers after the restart %v, want one restart marker first:\n%s", gaps, summary(evs))
	}
	if code := p.term(time.Minute); code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0", code)
	}
}

// hasOp reports whether patch holds the op on path with value.
func hasOp(patch []map[string]any, op, path string, value any) bool {
	for _, o := range patch {
		if o["op"] == op && o["path"] == path && o["value"] == value {
			return true
		}
	}
	return false
}

// Objects created right after a CRD is installed, before kubefeed's
// resolver (every 10s) finds the resource, were created while kubefeed
// ran: they are not "present at start" (initialList: skip) and must be
// delivered as added, like objects created a moment later.
func TestObjectsCreatedBeforeALateCRDResolvesAreDelivered(t *testing.T) {
	const group = "early.example.com"
	ns := namespace(t, "crdearly", nil)
	dir := t.TempDir()
	cfg := writeFile(t, "c.yaml", fileCheckpointConfig(dir, "  - {resource: gadgets."+group+", namespaces: [crdearly]}\n"))
	events := filepath.Join(dir, "events.jsonl")
	p := startKubefeedReady(t, cfg)
	p.waitLogContains(t, "resource not available yet")
	createLateCRD(t, group)
	_, dyn := clients(t)
	gs := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gadgets"}).Namespace(ns)
	for _, n := range []string{"e1", "e2"} {
		u := gadget(n, map[string]any{"v": int64(1)})
		u.SetAPIVersion(group + "/v1")
		if _, err := gs.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitLogContains(t, "resource appeared; watching")
	waitFileEvents(t, events, "e1 and e2 added (created after kubefeed started, before it resolved the CRD)", func(evs []got) bool {
		return has(evs, "added", "e1") && has(evs, "added", "e2")
	})
}
