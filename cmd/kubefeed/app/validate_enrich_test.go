package app

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// reviewCluster is a fake API server that serves events, pods, nodes and
// deployments, and answers SelfSubjectAccessReviews from allowed ("verb
// resource namespace", namespace "" for all), recording every review.
type reviewCluster struct {
	cs      *fake.Clientset
	mu      sync.Mutex
	reviews []string
}

func newReviewCluster(allowed ...string) *reviewCluster {
	rc := &reviewCluster{cs: fake.NewClientset()}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	rc.cs.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "events", Kind: "Event", Namespaced: true, Verbs: []string{"list", "watch"}},
			{Name: "pods", Kind: "Pod", Namespaced: true, ShortNames: []string{"po"}, Verbs: []string{"list", "watch"}},
			{Name: "nodes", Kind: "Node", Namespaced: false, Verbs: []string{"list", "watch"}},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "deployments", Kind: "Deployment", Namespaced: true, Verbs: []string{"list", "watch"}},
		}},
	}
	rc.cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		at := r.Spec.ResourceAttributes
		key := at.Verb + " " + at.Resource + " " + at.Namespace
		rc.mu.Lock()
		rc.reviews = append(rc.reviews, key)
		rc.mu.Unlock()
		out := r.DeepCopy()
		out.Status.Allowed = ok[key] || ok[at.Verb+" "+at.Resource+" "] // cluster-wide grants cover every namespace
		return true, out, nil
	})
	return rc
}

// reviewed returns the reviews made for resource, sorted.
func (rc *reviewCluster) reviewed(resource string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, r := range rc.reviews {
		if strings.Fields(r)[1] == resource {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// checkConfig writes yml, loads it and runs both cluster checks as
// checkCluster does, returning problems and warnings with their positions.
func checkConfig(t *testing.T, rc *reviewCluster, yml string, kinds []string) (problems, warnings []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewDiscoveryResolver(rc.cs.Discovery())
	ps, err := clusterProblems(context.Background(), rc.cs, res, path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	more, ws, err := enrichProblems(context.Background(), rc.cs, res, path, cfg, kinds)
	if err != nil {
		t.Fatal(err)
	}
	ps = append(ps, more...)
	locateProblems(path, ps)
	locateProblems(path, ws)
	for _, p := range ps {
		problems = append(problems, strings.ReplaceAll(p.String(), path, "c.yaml"))
	}
	for _, w := range ws {
		warnings = append(warnings, strings.ReplaceAll(w.String(), path, "c.yaml"))
	}
	return problems, warnings
}

const validateHead = "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nsinks:\n  - {name: out, stdout: {}}\nwatch:\n"

// Rules limited to namespaces: list/watch on the enrichment kinds is
// checked in those namespaces only (never in all namespaces) for namespaced
// kinds, cluster-wide for cluster-scoped ones; a missing permission is
// reported at the enrich field of the rule that listed the namespace; an
// unserved kind is a warning, not a problem.
func TestValidateEnrichNamespaceLimited(t *testing.T) {
	rc := newReviewCluster(
		"list events a", "watch events a", "list events b", "watch events b", "list deployments ", "watch deployments ",
		"list pods a", "watch pods a", "list nodes ", "watch nodes ")
	yml := validateHead +
		"  - resource: deployments.apps\n" +
		"  - resource: events\n    namespaces: [a]\n    enrich: involvedObject\n" +
		"  - resource: events\n    namespaces: [b, a]\n    enrich: involvedObject\n"
	problems, warnings := checkConfig(t, rc, yml, []string{"pods", "nodes", "gizmos.nowhere.io", "po"})
	want := []string{
		"c.yaml:12:13: watch[2].enrich: not allowed to list pods in namespace b, which enrichment needs (Events about them are sent without data.involvedObject)",
		"c.yaml:12:13: watch[2].enrich: not allowed to watch pods in namespace b, which enrichment needs (Events about them are sent without data.involvedObject)",
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `c.yaml:9:13: watch[1].enrich: enrichment kind "gizmos.nowhere.io" is not served by the cluster`) {
		t.Errorf("warnings = %q", warnings)
	}
	if got, w := rc.reviewed("pods"), []string{"list pods a", "list pods b", "watch pods a", "watch pods b"}; !reflect.DeepEqual(got, w) {
		t.Errorf("pods reviews = %q, want %q (once each, never all namespaces)", got, w)
	}
	if got, w := rc.reviewed("nodes"), []string{"list nodes ", "watch nodes "}; !reflect.DeepEqual(got, w) {
		t.Errorf("nodes reviews = %q, want %q", got, w)
	}
}

// One enriching rule over all namespaces (or with a namespaceSelector)
// makes enrichment cluster-wide: the check asks for all namespaces and
// names that rule.
func TestValidateEnrichClusterWide(t *testing.T) {
	for _, tc := range []struct{ name, rule string }{
		{"all namespaces", "  - resource: events\n    enrich: involvedObject\n"},
		{"namespaceSelector", "  - resource: events\n    namespaceSelector: team=shop\n    enrich: involvedObject\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReviewCluster("list events ", "watch events ", "list pods a", "watch pods a", "list namespaces ", "watch namespaces ")
			yml := validateHead + "  - resource: events\n    namespaces: [a]\n    enrich: involvedObject\n" + tc.rule
			problems, warnings := checkConfig(t, rc, yml, []string{"pods"})
			if len(problems) != 2 || !strings.Contains(problems[0], "watch[1].enrich: not allowed to list pods in all namespaces") ||
				!strings.Contains(problems[1], "watch[1].enrich: not allowed to watch pods in all namespaces") {
				t.Errorf("problems:\n%s", strings.Join(problems, "\n"))
			}
			if len(warnings) != 0 {
				t.Errorf("warnings = %q", warnings)
			}
			if got, w := rc.reviewed("pods"), []string{"list pods ", "watch pods "}; !reflect.DeepEqual(got, w) {
				t.Errorf("pods reviews = %q, want %q", got, w)
			}
		})
	}
}

// Without an enriching rule the enrichment kinds are not checked at all.
func TestValidateEnrichNotAsked(t *testing.T) {
	rc := newReviewCluster("list events ", "watch events ")
	problems, warnings := checkConfig(t, rc, validateHead+"  - resource: events\n", []string{"pods", "gizmos.nowhere.io"})
	if len(problems) != 0 || len(warnings) != 0 {
		t.Errorf("problems %q, warnings %q", problems, warnings)
	}
	if got := rc.reviewed("pods"); len(got) != 0 {
		t.Errorf("pods reviewed without an enriching rule: %q", got)
	}
}

// The kinds validate checks by default are the chart's default
// enrich.resources.
func TestDefaultEnrichResourcesAreTheCharts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "charts", "kubefeed", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Enrich struct {
			Resources []string `yaml:"resources"`
		} `yaml:"enrich"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Enrich.Resources, defaultEnrichResources) {
		t.Errorf("chart enrich.resources = %q\ndefaultEnrichResources = %q", v.Enrich.Resources, defaultEnrichResources)
	}
}
