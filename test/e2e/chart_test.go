package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/test/cluster"
)

var chartDir = filepath.Join(cluster.RepoRoot(), "charts", "kubefeed")

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := cluster.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func render(t *testing.T, values, ns string, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", "t", chartDir, "-n", ns, "-f", values}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template -f %s: %v\n%s", values, err, out)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func rulesOf(o *unstructured.Unstructured) string {
	b, _ := json.Marshal(o.Object["rules"])
	return string(b)
}

// apply creates the objects on the test API server, for real or as a
// server-side dry run, which validates each of them.
func apply(t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(cfg)
	res := resource.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(cfg))
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gv := o.GetAPIVersion()
		name := strings.ToLower(o.GetKind())
		if i := strings.Index(gv, "/"); i >= 0 {
			name += "." + gv[:i]
		}
		r, err := res.Resolve(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := dyn.Resource(r.GVR).Namespace(o.GetNamespace()).Create(context.Background(), o, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("apply %s %s/%s (dry run %v): %v", o.GetKind(), o.GetNamespace(), o.GetName(), dryRun, err)
		}
	}
}

func TestChartLintTemplateAndServerValidation(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chartDir); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
	for _, ns := range []string{"chart-rel", "chart-shop", "chart-web", "chart-vault", "chart-lease"} {
		_ = ensureNamespace(t, ns)
	}
	ensureWidgetCRD(t)
	sets, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(sets) < 4 {
		t.Fatalf("value sets: %v", sets)
	}
	for _, values := range sets {
		t.Run(filepath.Base(values), func(t *testing.T) {
			if out, err := helm(t, "lint", "--strict", chartDir, "-f", values); err != nil {
				t.Fatalf("helm lint --strict -f: %v\n%s", err, out)
			}
			objs := render(t, values, "chart-rel")
			apply(t, cp.Config(), objs, true)
			dep := byKind(objs, "Deployment")[0]
			pod := dep.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			sc := pod["securityContext"].(map[string]any)
			csc := pod["containers"].([]any)[0].(map[string]any)["securityContext"].(map[string]any)
			if sc["runAsNonRoot"] != true || csc["readOnlyRootFilesystem"] != true || csc["allowPrivilegeEscalation"] != false ||
				sc["seccompProfile"].(map[string]any)["type"] != "RuntimeDefault" {
				t.Errorf("pod security: %v %v", sc, csc)
			}
			crs, roles := byKind(objs, "ClusterRole"), byKind(objs, "Role")
			all := ""
			for _, r := range append(crs, roles...) {
				all += rulesOf(r)
			}
			switch filepath.Base(values) {
			case "namespaced-values.yaml":
				if len(crs) != 0 || len(roles) != 2 {
					t.Errorf("namespaced: %d ClusterRoles, %d Roles; want 0 and 2", len(crs), len(roles))
				}
				for _, r := range roles {
					want := map[string]string{"chart-shop": `[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","list","watch"]},{"apiGroups":["apps"],"resources":["deployments"],"verbs":["get","list","watch"]}]`,
						"chart-web": `[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","list","watch"]}]`}[r.GetNamespace()]
					if rulesOf(r) != want {
						t.Errorf("Role in %s: %s, want %s", r.GetNamespace(), rulesOf(r), want)
					}
				}
			case "all-namespaces-values.yaml":
				want := `[{"apiGroups":[""],"resources":["nodes"],"verbs":["get","list","watch"]},{"apiGroups":["apps"],"resources":["deployments"],"verbs":["get","list","watch"]},{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get","list","watch"]}]`
				if len(crs) != 1 || rulesOf(crs[0]) != want || len(roles) != 0 {
					t.Errorf("all namespaces: %s, want %s", all, want)
				}
				if len(byKind(objs, "PersistentVolumeClaim")) != 1 || len(byKind(objs, "NetworkPolicy")) != 1 {
					t.Error("PVC or NetworkPolicy missing")
				}
				if n := len(byKind(objs, "PodDisruptionBudget")); n != 0 {
					t.Errorf("%d PodDisruptionBudgets over one replica, want none (it would block every drain)", n)
				}
			case "ha-values.yaml":
				if !strings.Contains(all, `"leases"`) || !strings.Contains(all, `"namespaces"`) || len(byKind(objs, "PersistentVolumeClaim")) != 0 {
					t.Errorf("HA: rules %s", all)
				}
				if n := len(byKind(objs, "PodDisruptionBudget")); n != 1 {
					t.Errorf("%d PodDisruptionBudgets over two replicas, want 1", n)
				}
			case "sharded-values.yaml":
				want := `{"apiGroups":["coordination.k8s.io"],"resourceNames":["t-kubefeed-shard-0","t-kubefeed-shard-1","t-kubefeed-shard-2","t-kubefeed-members"],"resources":["leases"],"verbs":["get","update"]}`
				if !strings.Contains(all, want) {
					t.Errorf("sharded: rules %s, want the lease rule %s", all, want)
				}
				if pdbs := byKind(objs, "PodDisruptionBudget"); len(pdbs) != 1 || toJSON(pdbs[0].Object["spec"].(map[string]any)["minAvailable"]) != "2" {
					t.Errorf("sharded: PodDisruptionBudgets %s, want 1 with minAvailable 2 over three replicas", toJSON(pdbs))
				}
			case "secrets-values.yaml":
				if !strings.Contains(all, `"secrets"`) || len(crs) != 0 {
					t.Errorf("secrets: rules %s", all)
				}
			}
			if filepath.Base(values) != "secrets-values.yaml" && strings.Contains(all, `"secrets"`) {
				t.Errorf("Secrets granted without a rule that watches them: %s", all)
			}
		})
	}
}

func TestChartRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"--set", "replicaCount=0"}, "replicaCount"},
		{[]string{"--set", "config.watch[0].events[0]=CHANGED"}, "events"},
		{[]string{"--set", "config.wach=1"}, "wach"},
		{[]string{"--set", "config.watch[0].resource=pods", "--set", "config.watch[0].typo=1"}, "typo"},
		{[]string{"--set", "replicaCount=2"}, "replicaCount 2 needs config.leaderElection.enabled: true"},
		{[]string{"--set", "config.leaderElection.standby=hot"}, "/config/leaderElection/standby"},
		{[]string{"--set", "config.sharding.shards=0"}, "/config/sharding/shards"},
		{[]string{"--set", "config.sharding.shards=65"}, "/config/sharding/shards"},
		{[]string{"--set", "config.sharding.shard=3"}, "'shard' not allowed"},
		{[]string{"--set-json", "config.sharding={}"}, "missing property 'shards'"},
		{[]string{"--set", "config.sharding.shards=3"}, "config.sharding needs config.leaderElection.enabled: true"},
		{[]string{"--set", "config.sharding.shards=3", "--set", "config.leaderElection.enabled=true"}, "config.sharding needs config.checkpoint.jetstream"},
		{[]string{"--set", "config.sharding.shards=3", "--set", "config.leaderElection.enabled=true", "--set", "config.checkpoint.file.path=/var/lib/kubefeed/c.db"}, "config.sharding needs config.checkpoint.jetstream"},
		{[]string{"-f", filepath.Join(chartDir, "ci", "ha-values.yaml"), "--set", "config.leaderElection.standby=cold"}, "a cold standby is never Ready"},
		{[]string{"--set", "terminationGracePeriodSeconds=-1"}, "terminationGracePeriodSeconds"},
		{[]string{"-f", filepath.Join(chartDir, "ci", "ha-values.yaml"), "--set", "podDisruptionBudget.minAvailable=2"}, "must be below replicaCount"},
		{[]string{"--set", "podDisruptionBudget.minAvailable=half"}, "minAvailable"},
		{[]string{"--set", "networkPolicy.egres.enabled=true"}, "egres"},
		{[]string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true"}, "networkPolicy.egress.apiServer must list"},
		{[]string{"--set", "networkPolicy.egress.apiServer[0].cidr=10.0.0.1"}, "/networkPolicy/egress/apiServer/0/cidr"},
		{[]string{"--set", "networkPolicy.egress.apiServer[0].host=kubernetes"}, "'host' not allowed"},
		{[]string{"--set", "networkPolicy.egress.sinks[0].ports[0]=4222"}, "/networkPolicy/egress/sinks/0"},
		{[]string{"--set", "networkPolicy.egress.sinks[0].cidr=10.0.0.0/8", "--set", "networkPolicy.egress.sinks[0].ports[0]=70000"}, "/networkPolicy/egress/sinks/0/ports/0"},
		{[]string{"--set", "networkPolicy.egress.sinks[0].cidr=10.0.0.0/8", "--set", "networkPolicy.egress.sinks[0].ports[0].port=53", "--set", "networkPolicy.egress.sinks[0].ports[0].protocol=ICMP"}, "protocol"},
		{[]string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.sinks[0].cidr=10.0.0.0/8", "--set", "networkPolicy.egress.sinks[0].podSelector.matchLabels.app=x"}, "networkPolicy.egress.sinks[0]: give either cidr or"},
		{[]string{"--set", "networkPolicy.metricsFrom[0].pod.app=x"}, "'pod' not allowed"},
		{[]string{"--set-json", `config.sinks=[{"name":"kn","webhook":{"url":"http://x","types":"ApiServerSource"}}]`}, "/config/sinks/0/webhook/types"},
		{[]string{"--set-json", `config.sinks=[{"name":"kn","kafka":{"brokers":["k:9092"],"types":"Knative"}}]`}, "/config/sinks/0/kafka/types"},
		{[]string{"--set", "config.snapshots.namespce=x"}, "'namespce' not allowed"},
		{[]string{"-f", filepath.Join(chartDir, "ci", "sharded-values.yaml"), "--set", "config.snapshots.namespace=x"}, "config.snapshots is not supported together with config.sharding"},
	} {
		out, err := helm(t, append([]string{"template", "t", chartDir}, tc.set...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("helm template %v: %v, output lacks %q:\n%s", tc.set, err, tc.want, out)
		}
	}
}

// RBAC proof: the rendered ServiceAccount and Roles, applied for real; kubefeed
// runs as that ServiceAccount with the rendered config and delivers; reading
// anything outside the config is forbidden.
func TestChartRBACIsEnoughAndNoMore(t *testing.T) {
	for _, ns := range []string{"rbac-rel", "chart-shop", "chart-web"} {
		_ = ensureNamespace(t, ns)
	}
	objs := render(t, filepath.Join(chartDir, "ci", "namespaced-values.yaml"), "rbac-rel")
	run := startAsServiceAccount(t, objs, "rbac-rel", "caches synced")
	run.expectEvent(t, "chart-web", "rbac-proof")
	// Outside the config: forbidden.
	sac := run.client()
	ctx := context.Background()
	if _, err := sac.CoreV1().Secrets("chart-shop").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets in a watched namespace: %v, want forbidden", err)
	}
	if _, err := sac.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing configmaps outside the configured namespaces: %v, want forbidden", err)
	}
	if _, err := sac.AppsV1().Deployments("chart-web").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing deployments where only configmaps are watched: %v, want forbidden", err)
	}
	if _, err := sac.CoreV1().ConfigMaps("chart-shop").Create(ctx, cmTyped("write"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("writing: %v, want forbidden", err)
	}
	if _, err := sac.CoordinationV1().Leases("rbac-rel").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("leases without leader election: %v, want forbidden", err)
	}
}

// saRun is kubefeed running as the chart's ServiceAccount.
type saRun struct {
	sa    string
	lines chan string
	logs  *syncBuffer
}

// startAsServiceAccount applies the rendered ServiceAccount and RBAC objects
// for real, runs `kubefeed run` with the rendered config, impersonating the
// ServiceAccount, and waits for the log line until.
func startAsServiceAccount(t *testing.T, objs []*unstructured.Unstructured, releaseNS, until string) *saRun {
	t.Helper()
	var keep []*unstructured.Unstructured
	var config, sa string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = "system:serviceaccount:" + releaseNS + ":" + o.GetName()
			keep = append(keep, o)
		case "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			keep = append(keep, o)
		case "ConfigMap":
			config = o.Object["data"].(map[string]any)["config.yaml"].(string)
		}
	}
	apply(t, cp.Config(), keep, false)
	kc := writeFile(t, "kubeconfig", strings.Replace(mustRead(t, cp.Kubeconfig()), "token: "+cluster.AdminToken, "token: "+cluster.AdminToken+"\n    as: "+sa, 1))
	cfgPath := writeFile(t, "config.yaml", config)

	cmd := exec.Command(kubefeedBinary(t), "run", "--config", cfgPath, "--kubeconfig", kc, "--metrics-address", "127.0.0.1:0", "--log-format", "console")
	stdout, _ := cmd.StdoutPipe()
	run := &saRun{sa: sa, lines: make(chan string, 16), logs: &syncBuffer{}}
	cmd.Stderr = run.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			run.lines <- sc.Text()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(run.logs.String(), until) {
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed as the chart's ServiceAccount never logged %q:\n%s", until, run.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return run
}

// expectEvent creates a ConfigMap and expects its event on stdout, with no
// forbidden request in the log.
func (r *saRun) expectEvent(t *testing.T, ns, name string) {
	t.Helper()
	cs, _ := clients(t)
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cmTyped(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-r.lines:
		if !strings.Contains(l, `"subject":"/api/v1/namespaces/`+ns+`/configmaps/`+name+`"`) {
			t.Errorf("event: %s", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no event delivered as the ServiceAccount; log:\n%s", r.logs.String())
	}
	if strings.Contains(r.logs.String(), "forbidden") {
		t.Errorf("kubefeed hit forbidden requests with its own RBAC:\n%s", r.logs.String())
	}
}

// client is a clientset that impersonates the ServiceAccount.
func (r *saRun) client() *kubernetes.Clientset {
	asSA := rest.CopyConfig(cp.Config())
	asSA.Impersonate.UserName = r.sa
	return kubernetes.NewForConfigOrDie(asSA)
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(t *testing.T, name string) string {
	cs, _ := clients(t)
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

// With config.snapshots the chart's RBAC lets kubefeed, run as its
// ServiceAccount, take a snapshot request from its namespace and write
// the outcome back, and no more: ConfigMaps elsewhere stay read-only.
func TestChartSnapshotsRBACIsEnough(t *testing.T) {
	// Namespaces of its own: the release is always "t", so the Roles of
	// chart-web (another test's) would keep that test's subject.
	for _, ns := range []string{"snap-rel", "snap-requests", "snap-web"} {
		_ = ensureNamespace(t, ns)
	}
	objs := render(t, filepath.Join(chartDir, "ci", "namespaced-values.yaml"), "snap-rel", "--set", "config.snapshots.namespace=snap-requests",
		"--set-json", `config.watch=[{"resource":"configmaps","namespaces":["snap-web"]}]`)
	run := startAsServiceAccount(t, objs, "snap-rel", "caches synced")
	run.expectEvent(t, "snap-web", "snap-proof")
	code, out := runSnapshot(t, "--scope", "configmaps/snap-web", "-n", "snap-requests", "--timeout", "1m")
	if code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("kubefeed snapshot: exit %d\n%s\nkubefeed:\n%s", code, out, run.logs.String())
	}
	deadline := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case l := <-run.lines:
			found = strings.Contains(l, `"type":"io.kubefeed.snapshot.completed"`)
		case <-deadline:
			t.Fatalf("no snapshot.completed on stdout; log:\n%s", run.logs.String())
		}
	}
	if strings.Contains(run.logs.String(), "forbidden") {
		t.Errorf("kubefeed hit forbidden requests with its own RBAC:\n%s", run.logs.String())
	}
	sac := run.client()
	if _, err := sac.CoreV1().ConfigMaps("snap-web").Create(context.Background(), cmTyped("write"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("writing a ConfigMap outside the snapshots namespace: %v, want forbidden", err)
	}
	if _, err := sac.CoreV1().ConfigMaps("snap-requests").Create(context.Background(), cmTyped("write"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("creating a ConfigMap in the snapshots namespace: %v, want forbidden (kubefeed only updates requests)", err)
	}
}
