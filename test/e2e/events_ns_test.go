package e2e

import (
	"bufio"
	"context"
	"fmt"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/test/cluster"
)

// chartAccount is the chart's ServiceAccount and RBAC for a release,
// applied for real, with the rendered config.
type chartAccount struct {
	sa         string // system:serviceaccount:<ns>:<name>
	kubeconfig string // the admin's, impersonating sa
	config     string // path of the rendered config.yaml
	objs       []*unstructured.Unstructured
}

// applyChartAccount renders the chart (events-values.yaml plus args),
// applies its ServiceAccount, (Cluster)Roles and bindings, and writes the
// rendered config and a kubeconfig acting as the ServiceAccount.
func applyChartAccount(t *testing.T, rel, relNS string, args ...string) chartAccount {
	t.Helper()
	out, err := helm(t, append([]string{"template", rel, chartDir, "-n", relNS, "-f", filepath.Join(chartDir, "ci", "events-values.yaml")}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var ca chartAccount
	var cfgYAML string
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		o := &unstructured.Unstructured{Object: m}
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			ca.objs = append(ca.objs, o)
		case "ConfigMap":
			cfgYAML = m["data"].(map[string]any)["config.yaml"].(string)
		}
	}
	if cfgYAML == "" || len(ca.objs) < 3 {
		t.Fatalf("rendered %d RBAC objects, config %q", len(ca.objs), cfgYAML)
	}
	apply(t, cp.Config(), ca.objs, false)
	ca.sa = "system:serviceaccount:" + relNS + ":" + rel + "-kubefeed"
	ca.kubeconfig = writeFile(t, "kubeconfig", strings.Replace(mustRead(t, cp.Kubeconfig()), "token: "+cluster.AdminToken, "token: "+cluster.AdminToken+"\n    as: "+ca.sa, 1))
	ca.config = writeFile(t, "config.yaml", cfgYAML)
	return ca
}

// client returns a clientset acting as the ServiceAccount.
func (ca chartAccount) client() kubernetes.Interface {
	c := rest.CopyConfig(cp.Config())
	c.Impersonate.UserName = ca.sa
	return kubernetes.NewForConfigOrDie(c)
}

// runAs starts `kubefeed run` as the ServiceAccount; stdout lines arrive
// on the channel, stderr is in logs. The process is killed at cleanup.
func (ca chartAccount) runAs(t *testing.T) (<-chan string, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(kubefeedBinary(t), "run", "--config", ca.config, "--kubeconfig", ca.kubeconfig, "--log-format", "console")
	stdout, _ := cmd.StdoutPipe()
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, logs
}

// warnUntilEnriched creates Warning Events about pod until one arrives on
// lines with want in its data.involvedObject (the Pod informer starts with
// the first Event about a Pod, so the first ones may go out without).
func warnUntilEnriched(t *testing.T, lines <-chan string, logs *syncBuffer, pod *corev1.Pod, want string) {
	t.Helper()
	cs, _ := clients(t)
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no enriched event as the ServiceAccount; log:\n%s", logs.String())
		}
		name := fmt.Sprintf("%s.%d", pod.Name, i)
		if _, err := cs.CoreV1().Events(pod.Namespace).Create(ctx, coreEventFor(pod, name, corev1.EventTypeWarning), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wait := time.After(15 * time.Second)
		for {
			select {
			case l := <-lines:
				if !strings.Contains(l, `"name":"`+name+`"`) {
					continue
				}
				if strings.Contains(l, `"involvedObject":{"labels":`+want) {
					return
				}
			case <-wait:
				t.Fatalf("event %s never delivered; log:\n%s", name, logs.String())
			}
			break
		}
	}
}

// The chart grants the enrichment of namespace-limited rules in their
// namespaces' Roles (cluster-scoped kinds, built-in or listed in
// enrich.clusterScoped, stay in the ClusterRole); one rule over all
// namespaces or with a namespaceSelector makes it cluster-wide again.
func TestEventsChartRBACNamespaceLimited(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "events-values.yaml")
	limited := `config.watch=[{"resource":"events","namespaces":["shop","web"],"excludeNamespaces":["web"],"enrich":"involvedObject"},{"resource":"pods","namespaces":["web"]}]`
	objs := render(t, values, "kf", "--set-json", limited, "--set-json", `enrich.clusterScoped=["widgets.example.com"]`)
	crs := byKind(objs, "ClusterRole")
	wantCR := `[{"apiGroups":[""],"resources":["nodes"],"verbs":["list","watch"]},{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["list","watch"]}]`
	if len(crs) != 1 || rulesOf(crs[0]) != wantCR {
		t.Errorf("ClusterRoles %d: %v\nwant %s", len(crs), crs, wantCR)
	}
	roles := map[string]string{}
	for _, r := range byKind(objs, "Role") {
		roles[r.GetNamespace()] = rulesOf(r)
	}
	wantRoles := map[string]string{
		"shop": `[{"apiGroups":[""],"resources":["events"],"verbs":["get","list","watch"]},` +
			`{"apiGroups":[""],"resources":["pods"],"verbs":["list","watch"]},` +
			`{"apiGroups":["apps"],"resources":["deployments","replicasets"],"verbs":["list","watch"]}]`,
		// web is excluded from the enriching rule: no enrichment there.
		"web": `[{"apiGroups":[""],"resources":["events","pods"],"verbs":["get","list","watch"]}]`,
	}
	for ns, want := range wantRoles {
		if roles[ns] != want {
			t.Errorf("Role in %s: %s\nwant %s", ns, roles[ns], want)
		}
	}
	if len(roles) != len(wantRoles) {
		t.Errorf("Roles in %v", roles)
	}

	for _, wide := range []string{`{"resource":"events","enrich":"involvedObject"}`, `{"resource":"events","namespaceSelector":"team=shop","enrich":"involvedObject"}`} {
		objs := render(t, values, "kf", "--set-json", `config.watch=[{"resource":"events","namespaces":["shop"],"enrich":"involvedObject"},`+wide+`]`)
		crs := byKind(objs, "ClusterRole")
		if len(crs) != 1 || !strings.Contains(rulesOf(crs[0]), `{"apiGroups":[""],"resources":["nodes","pods"],"verbs":["list","watch"]}`) {
			t.Errorf("with %s: ClusterRoles %d %v, want pods cluster-wide", wide, len(crs), crs)
		}
		for _, r := range byKind(objs, "Role") {
			if strings.Contains(rulesOf(r), `"verbs":["list","watch"]`) {
				t.Errorf("with %s: Role in %s also grants enrichment: %s", wide, r.GetNamespace(), rulesOf(r))
			}
		}
	}
}

// A rule limited to namespace A enriches the Events of A while kubefeed
// runs as the chart's ServiceAccount, which may list/watch Pods in A only:
// the metadata informer never asks for all namespaces (no forbidden
// request). validate --cluster, as the same ServiceAccount, agrees, and
// names what is missing for kinds the chart did not grant.
func TestEventsEnrichNamespaceLimitedAsTheServiceAccount(t *testing.T) {
	rel, relNS := "evnsrbac", ensureNamespace(t, "events-ns-rbac-rel")
	nsA, nsB := ensureNamespace(t, "events-ns-a"), ensureNamespace(t, "events-ns-b")
	addr := freeAddr(t)
	ca := applyChartAccount(t, rel, relNS,
		"--set-json", `config.watch=[{"resource":"events","namespaces":["`+nsA+`"],"filter":"object.type == 'Warning'","enrich":"involvedObject"}]`,
		"--set-json", `enrich.resources=["pods"]`,
		"--set-json", `config.sinks=[{"name":"out","stdout":{}}]`, "--set-json", `config.metrics={"address":"`+addr+`"}`)
	if n := len(byKind(ca.objs, "ClusterRole")); n != 0 {
		t.Fatalf("%d ClusterRoles for a namespace-limited enriching rule over pods", n)
	}
	ctx := context.Background()
	sac := ca.client()
	// The API server's RBAC authorizer learns new Roles and RoleBindings
	// through its own informers: a moment after they are created.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = sac.CoreV1().Pods(nsA).List(ctx, metav1.ListOptions{}); err == nil || !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Errorf("listing pods in %s as the ServiceAccount: %v", nsA, err)
	}
	for _, ns := range []string{"", nsB} {
		if _, err := sac.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("listing pods in %q as the ServiceAccount: %v, want forbidden", ns, err)
		}
	}

	lines, logs := ca.runAs(t)
	waitReady(t, addr)
	cs, _ := clients(t)
	pod, err := cs.CoreV1().Pods(nsA).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Labels: map[string]string{"app": "api-a"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	warnUntilEnriched(t, lines, logs, pod, `{"app":"api-a"}`)
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("kubefeed hit forbidden requests with the chart's namespaced RBAC:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"namespaces": ["`+nsA+`"]`) {
		t.Errorf("the Pod metadata informer was not started for %s only; log:\n%s", nsA, logs.String())
	}

	// validate --cluster as the ServiceAccount: pods are granted where the
	// informers will watch them; the default kinds are not, and each is
	// named at the rule's enrich field (line 7 of the rendered config).
	bin := kubefeedBinary(t)
	run := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"validate", "--cluster", "--config", ca.config, "--kubeconfig", ca.kubeconfig}, args...)...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), strings.ReplaceAll(string(out), ca.config, "c.yaml")
	}
	if code, out := run("--enrich-resources", "pods,gizmos.nowhere.io"); code != 0 ||
		!strings.Contains(out, `warning: c.yaml:`) || !strings.Contains(out, `watch[0].enrich: enrichment kind "gizmos.nowhere.io" is not served by the cluster`) {
		t.Errorf("validate with the granted kinds: exit %d, output:\n%s", code, out)
	}
	code, out := run()
	if code != 1 || !strings.Contains(out, "watch[0].enrich: not allowed to list deployments in namespace "+nsA) ||
		!strings.Contains(out, "watch[0].enrich: not allowed to watch nodes in all namespaces") || strings.Contains(out, "list pods") {
		t.Errorf("validate with the default kinds: exit %d, output:\n%s", code, out)
	}
}
