package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// The chart's safe defaults: the grace period follows shutdownTimeout, a PDB
// only where it cannot block drains, the lease Role where the Lease is, and a
// NetworkPolicy that admits no one unless told.

func podSpec(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	deps := byKind(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(deps))
	}
	return deps[0].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestChartGracePeriodFollowsShutdownTimeout(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "namespaced-values.yaml")
	for _, tc := range []struct {
		set  []string
		want int64
	}{
		{nil, 45}, // kubefeed's default shutdownTimeout, 30s, + 15s
		{[]string{"config.shutdownTimeout=2m"}, 135},
		{[]string{"config.shutdownTimeout=1m30.5s"}, 106}, // 90.5s rounds up
		{[]string{"config.shutdownTimeout=1h"}, 3615},
		{[]string{"config.shutdownTimeout=250ms"}, 16},
		{[]string{"config.shutdownTimeout=2m", "terminationGracePeriodSeconds=20"}, 20},
		{[]string{"terminationGracePeriodSeconds=0"}, 0},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			got := podSpec(t, render(t, values, "chart-rel", args...))["terminationGracePeriodSeconds"]
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("terminationGracePeriodSeconds %v, want %d", got, tc.want)
			}
		})
	}
}

func TestChartPodDisruptionBudgetOnlyWithReplicas(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "ha-values.yaml")
	for _, replicas := range []int{1, 2, 3} {
		objs := render(t, values, "chart-rel", "--set", fmt.Sprintf("replicaCount=%d", replicas))
		pdbs := byKind(objs, "PodDisruptionBudget")
		switch {
		case replicas == 1 && len(pdbs) != 0:
			t.Errorf("1 replica: %d PodDisruptionBudgets, want none", len(pdbs))
		case replicas > 1 && len(pdbs) != 1:
			t.Errorf("%d replicas: %d PodDisruptionBudgets, want 1", replicas, len(pdbs))
		case replicas > 1:
			if got := toJSON(pdbs[0].Object["spec"]); !strings.Contains(got, `"minAvailable":1`) {
				t.Errorf("%d replicas: PDB spec %s, want minAvailable 1", replicas, got)
			}
		}
	}
	// The default values enable it too, so HA installs get one.
	objs := render(t, filepath.Join(chartDir, "ci", "namespaced-values.yaml"), "chart-rel")
	if n := len(byKind(objs, "PodDisruptionBudget")); n != 0 {
		t.Errorf("defaults at one replica: %d PodDisruptionBudgets, want none", n)
	}
}

// The lease Role and RoleBinding land in leaderElection.namespace, bind the
// release namespace's ServiceAccount, and kubefeed running as that
// ServiceAccount takes the Lease there and delivers.
func TestChartLeaseRBACInLeaderElectionNamespace(t *testing.T) {
	for _, ns := range []string{"rbac-rel", "chart-shop", "chart-web", "chart-lease"} {
		_ = ensureNamespace(t, ns)
	}
	srv := natstest.StartT(t, natstest.Options{})
	extra := writeFile(t, "le.yaml", fmt.Sprintf(`config:
  checkpoint:
    jetstream: { servers: [%q], bucket: kubefeed-chart-lease }
  leaderElection: { enabled: true, namespace: chart-lease }
`, srv.URL()))
	objs := render(t, filepath.Join(chartDir, "ci", "namespaced-values.yaml"), "rbac-rel", "-f", extra)
	var leRoles []string
	for _, o := range append(byKind(objs, "Role"), byKind(objs, "RoleBinding")...) {
		if strings.HasSuffix(o.GetName(), "-leader-election") {
			leRoles = append(leRoles, o.GetKind()+" "+o.GetNamespace())
			if o.GetKind() == "Role" {
				want := `[{"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["create"]},{"apiGroups":["coordination.k8s.io"],"resourceNames":["t-kubefeed"],"resources":["leases"],"verbs":["get","update"]}]`
				if got := rulesOf(o); got != want {
					t.Errorf("lease Role rules %s, want %s", got, want)
				}
			}
		}
	}
	if strings.Join(leRoles, ",") != "Role chart-lease,RoleBinding chart-lease" {
		t.Fatalf("leader-election RBAC in %v, want a Role and a RoleBinding in chart-lease", leRoles)
	}
	run := startAsServiceAccount(t, objs, "rbac-rel", "caches synced")
	if !strings.Contains(run.logs.String(), "became the leader") {
		t.Fatalf("synced without the lease:\n%s", run.logs.String())
	}
	run.expectEvent(t, "chart-web", "lease-proof")
	cs, _ := clients(t)
	ctx := context.Background()
	lease, err := cs.CoordinationV1().Leases("chart-lease").Get(ctx, "t-kubefeed", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("Lease chart-lease/t-kubefeed: %v %+v", err, lease)
	}
	sac := run.client()
	if _, err := sac.CoordinationV1().Leases("rbac-rel").Get(ctx, "t-kubefeed", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("lease in the release namespace: %v, want forbidden", err)
	}
	if _, err := sac.CoordinationV1().Leases("chart-lease").Get(ctx, "someone-else", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("another Lease in chart-lease: %v, want forbidden", err)
	}
}

func TestChartNetworkPolicy(t *testing.T) {
	_ = ensureNamespace(t, "chart-rel")
	values := filepath.Join(chartDir, "ci", "namespaced-values.yaml")
	policy := func(t *testing.T, extra ...string) map[string]any {
		t.Helper()
		objs := render(t, values, "chart-rel", append([]string{"--set", "networkPolicy.enabled=true"}, extra...)...)
		nps := byKind(objs, "NetworkPolicy")
		if len(nps) != 1 {
			t.Fatalf("%d NetworkPolicies, want 1", len(nps))
		}
		apply(t, cp.Config(), nps, true)
		return nps[0].Object["spec"].(map[string]any)
	}

	t.Run("empty metricsFrom admits no one", func(t *testing.T) {
		spec := policy(t)
		ingress, ok := spec["ingress"].([]any)
		if got := toJSON(spec["policyTypes"]); got != `["Ingress"]` || !ok || len(ingress) != 0 {
			t.Errorf("policyTypes %s, ingress %s; want [Ingress] and no ingress rule (deny all)", got, toJSON(spec["ingress"]))
		}
		if _, ok := spec["egress"]; ok {
			t.Errorf("egress rules without egress.enabled: %s", toJSON(spec["egress"]))
		}
	})

	t.Run("metricsFrom admits those peers to the metrics port only", func(t *testing.T) {
		spec := policy(t, "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring")
		want := `[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}],"ports":[{"port":"metrics"}]}]`
		if got := toJSON(spec["ingress"]); got != want {
			t.Errorf("ingress %s, want %s", got, want)
		}
	})

	t.Run("egress allow-list", func(t *testing.T) {
		extra := writeFile(t, "egress.yaml", `networkPolicy:
  egress:
    enabled: true
    apiServer:
      - { cidr: 10.96.0.1/32, ports: [443] }
      - { cidr: 172.18.0.2/32, ports: [6443] }
    sinks:
      - { namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: nats } }, podSelector: { matchLabels: { app: nats } }, ports: [4222, { port: 7422, protocol: UDP, endPort: 7430 }] }
      - { cidr: 203.0.113.0/24, except: [203.0.113.8/32] }
`)
		spec := policy(t, "-f", extra)
		if got := toJSON(spec["policyTypes"]); got != `["Ingress","Egress"]` {
			t.Errorf("policyTypes %s", got)
		}
		want := `[{"ports":[{"port":443,"protocol":"TCP"}],"to":[{"ipBlock":{"cidr":"10.96.0.1/32"}}]},` +
			`{"ports":[{"port":6443,"protocol":"TCP"}],"to":[{"ipBlock":{"cidr":"172.18.0.2/32"}}]},` +
			`{"ports":[{"port":4222,"protocol":"TCP"},{"endPort":7430,"port":7422,"protocol":"UDP"}],"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"nats"}},"podSelector":{"matchLabels":{"app":"nats"}}}]},` +
			`{"to":[{"ipBlock":{"cidr":"203.0.113.0/24","except":["203.0.113.8/32"]}}]},` +
			`{"ports":[{"port":53,"protocol":"UDP"},{"port":53,"protocol":"TCP"}],"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kube-system"}},"podSelector":{"matchLabels":{"k8s-app":"kube-dns"}}}]}]`
		if got := toJSON(spec["egress"]); got != want {
			t.Errorf("egress\n got %s\nwant %s", got, want)
		}
		spec = policy(t, "-f", extra, "--set", "networkPolicy.egress.dns=false")
		if got := toJSON(spec["egress"]); strings.Contains(got, "53") || strings.Count(got, `"to"`) != 4 {
			t.Errorf("egress with dns: false: %s", got)
		}
	})
}
