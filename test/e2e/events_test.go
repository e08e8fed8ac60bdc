package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/test/cluster"
)

// eventsRecipe is the watch section of the README's "Export Kubernetes
// Events" recipe, as written there.
const eventsRecipe = `watch:
  - resource: events                 # core/v1 Events, all namespaces
    filter: object.type == 'Warning' # warnings only
    enrich: involvedObject           # + labels, annotations, owners of the object
    # expiry: skip (the default): an Event's TTL deletion emits nothing
`

// eventLine is an event as the file sink writes it, with what the Events
// test reads.
type eventLine struct {
	Type      string `json:"type"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Data      struct {
		Object         map[string]any   `json:"object"`
		Patch          []map[string]any `json:"patch"`
		InvolvedObject *struct {
			Labels          map[string]string `json:"labels"`
			Annotations     map[string]string `json:"annotations"`
			OwnerReferences []map[string]any  `json:"ownerReferences"`
		} `json:"involvedObject"`
	} `json:"data"`
}

func readEvents(t *testing.T, path, ns string) []eventLine {
	t.Helper()
	var out []eventLine
	for _, l := range readLines(t, path) {
		var e eventLine
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("bad line %s: %v", l, err)
		}
		if e.Namespace == ns {
			out = append(out, e)
		}
	}
	return out
}

// waitEvents polls the file until cond holds (a liveness bound, not a
// timing assertion).
func waitEvents(t *testing.T, path, ns, what string, cond func([]eventLine) bool) []eventLine {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		evs := readEvents(t, path, ns)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got %+v", what, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiserverGets sums apiserver_request_total for GET on a resource.
func apiserverGets(t *testing.T, resource string) float64 {
	t.Helper()
	cs, _ := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	re := regexp.MustCompile(`(?m)^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], `verb="GET"`) && strings.Contains(m[1], `resource="`+resource+`"`) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// waitReady polls kubefeed's /metrics until kubefeed_ready is 1.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if metricValue(t, string(b), "kubefeed_ready") == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("kubefeed not ready after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func coreEventFor(pod *corev1.Pod, name, typ string) *corev1.Event {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			FieldPath: "spec.containers{app}"},
		Reason: "BackOff", Message: "Back-off restarting failed container app", Type: typ,
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
}

// The README recipe against the real API server, through the binary:
// warnings only, count bumps as compact patches, the involved Pod's labels
// from the metadata cache with no GET per event, and an Event's deletion
// emitting nothing.
func TestEventsRecipe(t *testing.T) {
	ns := namespace(t, "events-recipe", nil)
	cs, _ := clients(t)
	ctx := context.Background()
	yes := true
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations:     map[string]string{"team": "shop", "kubectl.kubernetes.io/last-applied-configuration": `{"secret":"no"}`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-abc", UID: "11111111-2222-3333-4444-555555555555", Controller: &yes}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "events.jsonl")
	addr := freeAddr(t)
	cfg := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: prod-eu-1\n"+eventsRecipe+
		fmt.Sprintf("sinks:\n  - name: file\n    file: { path: %s }\nmetrics: { address: %q }\n", out, addr))
	d := startDaemonWait(t, cfg, "informers started")
	defer d.kill()
	waitReady(t, addr)
	getsBefore := apiserverGets(t, "pods")

	events := cs.CoreV1().Events(ns)
	if _, err := events.Create(ctx, coreEventFor(pod, "web-1.normal", corev1.EventTypeNormal), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	warn, err := events.Create(ctx, coreEventFor(pod, "web-1.warn", corev1.EventTypeWarning), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitEvents(t, out, ns, "the warning added", func(evs []eventLine) bool { return len(evs) >= 1 })

	// Count bumps, as the kubelet makes them, until one arrives enriched:
	// the Pod kind's metadata informer starts with the first Event and
	// enrichment appears once it has listed.
	var enriched *eventLine
	for count := int32(2); enriched == nil; count++ {
		if count > 40 {
			t.Fatal("no enriched event after 40 count bumps")
		}
		warn.Count = count
		warn.LastTimestamp = metav1.NewTime(warn.LastTimestamp.Add(time.Second))
		if warn, err = events.Update(ctx, warn, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		evs := waitEvents(t, out, ns, fmt.Sprintf("the bump to %d", count), func(evs []eventLine) bool {
			for _, e := range evs {
				if e.Name == "web-1.warn" && e.Type == "io.kubefeed.resource.modified" && fmt.Sprint(e.Data.Object["count"]) == fmt.Sprint(count) {
					return true
				}
			}
			return false
		})
		e := evs[len(evs)-1]
		var paths []string
		for _, op := range e.Data.Patch {
			paths = append(paths, fmt.Sprint(op["op"], " ", op["path"]))
		}
		if strings.Join(paths, ",") != "replace /count,replace /lastTimestamp" {
			t.Fatalf("count bump patch = %v, want replace /count and /lastTimestamp only", e.Data.Patch)
		}
		if e.Data.InvolvedObject != nil {
			enriched = &e
		}
	}
	inv := enriched.Data.InvolvedObject
	if inv.Labels["app"] != "web" || inv.Labels["tier"] != "front" || inv.Annotations["team"] != "shop" {
		t.Errorf("involvedObject = %+v", inv)
	}
	if _, ok := inv.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("the last-applied configuration left with the enrichment")
	}
	if len(inv.OwnerReferences) != 1 || inv.OwnerReferences[0]["name"] != "web-abc" {
		t.Errorf("ownerReferences = %v", inv.OwnerReferences)
	}

	// The TTL expiry of an Event emits nothing (expiry: skip), and
	// neither does a Normal Event. Another warning, created after the
	// deletion, arrives; once nothing is pending, the deletion was handled.
	if err := events.Delete(ctx, "web-1.warn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Create(ctx, coreEventFor(pod, "web-1.later", corev1.EventTypeWarning), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, out, ns, "the later warning", func(evs []eventLine) bool {
		for _, e := range evs {
			if e.Name == "web-1.later" {
				return true
			}
		}
		return false
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, addr)
		if metricValue(t, m, `kubefeed_queue_oldest_seconds{sink="file"}`) == 0 && metricValue(t, m, `kubefeed_changes_observed_total{resource="events",type="DELETED"}`) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed never finished the pending changes:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, e := range readEvents(t, out, ns) {
		if e.Type == "io.kubefeed.resource.deleted" {
			t.Errorf("the expiry of %s was reported", e.Name)
		}
		if e.Data.Object["type"] != "Warning" {
			t.Errorf("%s (%v) passed the warnings-only filter", e.Name, e.Data.Object["type"])
		}
	}
	if n := metricValue(t, scrape(t, addr), `kubefeed_enrich_misses_total{reason="unresolved"}`); n != 0 {
		t.Errorf("unresolved misses = %v", n)
	}
	after := apiserverGets(t, "pods")
	if after != getsBefore {
		t.Errorf("GET requests on pods went from %v to %v: enrichment must read the metadata cache only", getsBefore, after)
	}
	// The count is a real measure: one GET of ours moves it by one.
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := apiserverGets(t, "pods"); n != after+1 {
		t.Errorf("one GET moved apiserver_request_total from %v to %v; the measure is blind", after, n)
	}
}

// The chart grants list/watch on enrich.resources, cluster-wide, only when
// a rule enriches Events.
func TestEventsChartRBAC(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "events-values.yaml")
	crs := byKind(render(t, values, "kf"), "ClusterRole")
	want := `[{"apiGroups":[""],"resources":["events"],"verbs":["get","list","watch"]},` +
		`{"apiGroups":[""],"resources":["nodes","pods"],"verbs":["list","watch"]},` +
		`{"apiGroups":["apps"],"resources":["deployments","replicasets"],"verbs":["list","watch"]},` +
		`{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["list","watch"]}]`
	if len(crs) != 1 || rulesOf(crs[0]) != want {
		t.Errorf("ClusterRoles %d, rules %v\nwant %s", len(crs), func() string {
			if len(crs) == 0 {
				return ""
			}
			return rulesOf(crs[0])
		}(), want)
	}
	// Without enrich, namespaced events rules get a Role and nothing
	// cluster-wide.
	objs := render(t, values, "kf", "--set-json", `config.watch=[{"resource":"events","namespaces":["shop"]}]`)
	if n := len(byKind(objs, "ClusterRole")); n != 0 {
		t.Errorf("%d ClusterRoles without enrich", n)
	}
	if roles := byKind(objs, "Role"); len(roles) != 1 || rulesOf(roles[0]) != `[{"apiGroups":[""],"resources":["events"],"verbs":["get","list","watch"]}]` {
		t.Errorf("Roles without enrich: %d", len(roles))
	}
}

// The recipe the e2e test runs is the README's, as written.
func TestEventsRecipeIsTheREADMEs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "## Export Kubernetes Events") || !strings.Contains(string(b), "\n"+eventsRecipe) {
		t.Errorf("README.md's \"Export Kubernetes Events\" recipe differs from the one tested:\n%s", eventsRecipe)
	}
}

// RBAC proof for enrichment: the chart's ServiceAccount, ClusterRole and
// binding for the recipe, applied for real; kubefeed runs as that
// ServiceAccount and delivers enriched warnings without a forbidden
// request, while the ServiceAccount may not GET the Pods it enriches from.
func TestEventsChartRBACEnrichesAsTheServiceAccount(t *testing.T) {
	rel, relNS := "evrbac", ensureNamespace(t, "events-rbac-rel")
	ns := ensureNamespace(t, "events-rbac")
	addr := freeAddr(t)
	ca := applyChartAccount(t, rel, relNS, "--set-json", `config.sinks=[{"name":"out","stdout":{}}]`, "--set-json", `config.metrics={"address":"`+addr+`"}`)
	lines, logs := ca.runAs(t)
	waitReady(t, addr) // Events present before the first list are a baseline
	cs, _ := clients(t)
	ctx := context.Background()
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Labels: map[string]string{"app": "api"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	warnUntilEnriched(t, lines, logs, pod, `{"app":"api"}`)
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("kubefeed hit forbidden requests with the chart's RBAC:\n%s", logs.String())
	}
	sac := ca.client()
	if _, err := sac.CoreV1().Pods(ns).Get(ctx, "api-1", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("GET of a Pod as the ServiceAccount: %v, want forbidden (enrichment needs list/watch only)", err)
	}
	if _, err := sac.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets: %v, want forbidden", err)
	}
}
