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

	"github.com/kubefeed/kubefeed/exporter"
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
	res := exporter.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(cfg))
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
	for _, ns := range []string{"chart-rel", "chart-shop", "chart-web", "chart-vault"} {
		namespace(t, ns, nil)
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
				if len(byKind(objs, "PersistentVolumeClaim")) != 1 || len(byKind(objs, "PodDisruptionBudget")) != 1 || len(byKind(objs, "NetworkPolicy")) != 1 {
					t.Error("PVC, PDB or NetworkPolicy missing")
				}
			case "ha-values.yaml":
				if !strings.Contains(all, `"leases"`) || !strings.Contains(all, `"namespaces"`) || len(byKind(objs, "PersistentVolumeClaim")) != 0 {
					t.Errorf("HA: rules %s", all)
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
		{[]string{"--set", "replicaCount=2"}, "leaderElection"},
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
	var keep []*unstructured.Unstructured
	var config string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			keep = append(keep, o)
		case "ConfigMap":
			config = o.Object["data"].(map[string]any)["config.yaml"].(string)
		}
	}
	apply(t, cp.Config(), keep, false)
	sa := "system:serviceaccount:rbac-rel:t-kubefeed"
	kc := writeFile(t, "kubeconfig", strings.Replace(mustRead(t, cp.Kubeconfig()), "token: "+cluster.AdminToken, "token: "+cluster.AdminToken+"\n    as: "+sa, 1))
	cfgPath := writeFile(t, "config.yaml", config)

	cmd := exec.Command(kubefeedBinary(t), "run", "--config", cfgPath, "--kubeconfig", kc, "--metrics-address", "127.0.0.1:0", "--log-format", "console")
	stdout, _ := cmd.StdoutPipe()
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "caches synced") {
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed as the chart's ServiceAccount did not sync:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cs, _ := clients(t)
	if _, err := cs.CoreV1().ConfigMaps("chart-web").Create(context.Background(), cmTyped("rbac-proof"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-lines:
		if !strings.Contains(l, `"subject":"/api/v1/namespaces/chart-web/configmaps/rbac-proof"`) {
			t.Errorf("event: %s", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no event delivered as the ServiceAccount; log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("kubefeed hit forbidden requests with its own RBAC:\n%s", logs.String())
	}
	// Outside the config: forbidden.
	asSA := rest.CopyConfig(cp.Config())
	asSA.Impersonate.UserName = sa
	sac := kubernetes.NewForConfigOrDie(asSA)
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
