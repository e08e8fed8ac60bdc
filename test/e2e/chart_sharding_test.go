package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The chart with config.sharding: the lease Role names the shard Leases and
// the membership Lease, and no other; the PodDisruptionBudget counts the
// pods that are Ready (warm standbys and shard holders are, cold standbys
// are not).

// TestChartShardingLeaseRBAC applies the sharded values' ServiceAccount and
// RBAC for real and, impersonating the ServiceAccount, creates, gets and
// updates <name>-shard-0..2 and <name>-members in leaderElection.namespace;
// another Lease (the unsharded <name>, a fourth shard) it may create, as
// create cannot be limited by name, but neither get nor update.
func TestChartShardingLeaseRBAC(t *testing.T) {
	const rel, leNS = "shard-rel", "chart-shard-lease"
	for _, ns := range []string{rel, leNS, "chart-shop", "chart-web"} {
		_ = ensureNamespace(t, ns)
	}
	objs := render(t, filepath.Join(chartDir, "ci", "sharded-values.yaml"), rel, "--set", "config.leaderElection.namespace="+leNS)
	var role *unstructured.Unstructured
	var keep []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			keep = append(keep, o)
		case "Role", "RoleBinding":
			if strings.HasSuffix(o.GetName(), "-leader-election") {
				if o.GetNamespace() != leNS {
					t.Errorf("%s %s in %s, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), leNS)
				}
				if o.GetKind() == "Role" {
					role = o
				}
				keep = append(keep, o)
			}
		}
	}
	if role == nil {
		t.Fatal("no leader-election Role rendered")
	}
	want := `[{"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["create"]},` +
		`{"apiGroups":["coordination.k8s.io"],"resourceNames":["t-kubefeed-shard-0","t-kubefeed-shard-1","t-kubefeed-shard-2","t-kubefeed-members"],"resources":["leases"],"verbs":["get","update"]}]`
	if got := rulesOf(role); got != want {
		t.Errorf("lease Role rules\n got %s\nwant %s", got, want)
	}
	apply(t, cp.Config(), keep, false)

	asSA := rest.CopyConfig(cp.Config())
	asSA.Impersonate.UserName = "system:serviceaccount:" + rel + ":t-kubefeed"
	leases := kubernetes.NewForConfigOrDie(asSA).CoordinationV1().Leases(leNS)
	ctx := context.Background()
	// The API server's RBAC authorizer reads Roles through an informer:
	// a grant is in force a moment after it is created.
	waitAllowed(t, asSA, authorizationv1.ResourceAttributes{Namespace: leNS, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "t-kubefeed-shard-0"})
	lease := func(name string) *coordinationv1.Lease {
		holder := "replica-a"
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	}
	for _, name := range []string{"t-kubefeed-shard-0", "t-kubefeed-shard-1", "t-kubefeed-shard-2", "t-kubefeed-members"} {
		if _, err := leases.Create(ctx, lease(name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("create Lease %s as the ServiceAccount: %v", name, err)
			continue
		}
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("get Lease %s as the ServiceAccount: %v", name, err)
			continue
		}
		holder := "replica-b"
		l.Spec.HolderIdentity = &holder
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Errorf("update Lease %s as the ServiceAccount: %v", name, err)
		}
	}
	for _, name := range []string{"t-kubefeed", "t-kubefeed-shard-3", "someone-else"} {
		if _, err := leases.Create(ctx, lease(name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("create Lease %s as the ServiceAccount: %v (create is granted for any name)", name, err)
		}
		if _, err := leases.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get Lease %s: %v, want forbidden", name, err)
		}
		if _, err := leases.Update(ctx, lease(name), metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("update Lease %s: %v, want forbidden", name, err)
		}
	}
	// Not in the release namespace either.
	if _, err := kubernetes.NewForConfigOrDie(asSA).CoordinationV1().Leases(rel).Get(ctx, "t-kubefeed-shard-0", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("shard Lease in the release namespace: %v, want forbidden", err)
	}
}

// TestChartPodDisruptionBudgetFitsStandbysAndShards: the PDB renders (and
// the API server accepts it) when an eviction stays possible, and the chart
// refuses minAvailable values that would leave none, counting only the
// Ready pods: all replicas with warm standbys or when each holds a shard,
// the leader (or one pod per shard) with cold standbys.
func TestChartPodDisruptionBudgetFitsStandbysAndShards(t *testing.T) {
	_ = ensureNamespace(t, "chart-rel")
	ha := filepath.Join(chartDir, "ci", "ha-values.yaml")
	sharded := filepath.Join(chartDir, "ci", "sharded-values.yaml")
	for _, tc := range []struct {
		values string
		set    []string
		min    string // the PDB's minAvailable; "" no PDB
		fail   string // the helm error, or ""
	}{
		{ha, nil, "1", ""},
		{ha, []string{"config.leaderElection.standby=warm", "replicaCount=3", "podDisruptionBudget.minAvailable=2"}, "2", ""},
		{ha, []string{"config.leaderElection.standby=cold"}, "", "config.leaderElection.standby: cold with replicaCount 2: a cold standby is never Ready, so only the leader is"},
		{ha, []string{"config.leaderElection.standby=cold", "podDisruptionBudget.enabled=false"}, "", ""},
		{ha, []string{"config.leaderElection.standby=cold", "podDisruptionBudget.minAvailable=0"}, "0", ""},
		{sharded, nil, "2", ""},
		{sharded, []string{"podDisruptionBudget.minAvailable=1"}, "1", ""},
		{sharded, []string{"podDisruptionBudget.minAvailable=3"}, "", "podDisruptionBudget.minAvailable (3) must be below replicaCount (3)"},
		{sharded, []string{"podDisruptionBudget.minAvailable=66%"}, "66%", ""},
		{sharded, []string{"podDisruptionBudget.minAvailable=67%"}, "", "podDisruptionBudget.minAvailable (67% = 3 of 3 pods) must be below replicaCount (3)"},
		// Cold standbys with as many shards as replicas: every replica holds one and is Ready.
		{sharded, []string{"config.leaderElection.standby=cold"}, "2", ""},
		{sharded, []string{"config.leaderElection.standby=cold", "config.sharding.shards=2"}, "", "only the 2 pods that hold shards are, and the PodDisruptionBudget (minAvailable 2) would forbid evicting them"},
		{sharded, []string{"config.leaderElection.standby=cold", "config.sharding.shards=2", "podDisruptionBudget.minAvailable=1"}, "1", ""},
		{sharded, []string{"config.leaderElection.standby=cold", "config.sharding.shards=1", "podDisruptionBudget.minAvailable=1"}, "", "only the pod that holds the shard is"},
	} {
		t.Run(filepath.Base(tc.values)+":"+strings.Join(tc.set, ","), func(t *testing.T) {
			args := []string{"template", "t", chartDir, "-n", "chart-rel", "-f", tc.values}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			if tc.fail != "" {
				out, err := helm(t, args...)
				if err == nil || !strings.Contains(out, tc.fail) {
					t.Errorf("helm template: %v, output lacks %q:\n%s", err, tc.fail, out)
				}
				return
			}
			var extra []string
			for _, s := range tc.set {
				extra = append(extra, "--set", s)
			}
			pdbs := byKind(render(t, tc.values, "chart-rel", extra...), "PodDisruptionBudget")
			if tc.min == "" {
				if len(pdbs) != 0 {
					t.Errorf("%d PodDisruptionBudgets, want none", len(pdbs))
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
			}
			if got := fmt.Sprint(pdbs[0].Object["spec"].(map[string]any)["minAvailable"]); got != tc.min {
				t.Errorf("minAvailable %s, want %s", got, tc.min)
			}
			apply(t, cp.Config(), pdbs, true)
		})
	}
}

// waitAllowed waits until the API server allows the request as cfg's user
// (asked with a SelfSubjectAccessReview): a Role or binding just created
// takes effect once the authorizer's informer has it.
func waitAllowed(t *testing.T, cfg *rest.Config, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(cfg)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s/%s never allowed as %s: %v", attrs.Verb, attrs.Resource, attrs.Name, cfg.Impersonate.UserName, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
