package app

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// defaultEnrichResources are the kinds `validate --cluster` checks for rules
// that enrich Events when --enrich-resources is not given: the chart's
// default enrich.resources (a test keeps the two equal).
var defaultEnrichResources = []string{
	"pods", "nodes", "services", "endpoints", "persistentvolumeclaims", "persistentvolumes",
	"replicationcontrollers", "namespaces",
	"deployments.apps", "replicasets.apps", "statefulsets.apps", "daemonsets.apps",
	"jobs.batch", "cronjobs.batch",
	"horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy", "ingresses.networking.k8s.io",
}

// enrichProblems checks what the metadata informers of enrichment need:
// list and watch on each of the kinds, in the namespaces kubefeed run will
// watch them in (exporter.EnrichScope: the enriching rules' namespaces for
// namespaced kinds when every such rule lists its namespaces, all
// namespaces otherwise and for cluster-scoped kinds). A missing permission
// is a problem at the enrich field of the rule that needs it; a kind the
// cluster does not serve is a warning (Events may name CRDs that are not
// installed). Nothing is checked when no rule enriches.
func enrichProblems(ctx context.Context, cs kubernetes.Interface, res resource.Resolver, path string, cfg *config.Config, kinds []string) (problems, warnings []config.Problem, err error) {
	scope := exporter.EnrichScopeOf(cfg)
	if len(scope.Rules) == 0 {
		return nil, nil, nil
	}
	at := func(ns string) string { return fmt.Sprintf("watch[%d].enrich", scope.RuleOf(ns)) }
	type check struct {
		gvr string
		ns  string
	}
	done := map[check]bool{}
	for _, name := range kinds {
		r, err := res.Resolve(name)
		if err != nil {
			msg := fmt.Sprintf("enrichment kind %q: %v; Events about it are sent without data.involvedObject", name, err)
			if meta.IsNoMatchError(err) {
				msg = fmt.Sprintf("enrichment kind %q is not served by the cluster; Events about it are sent without data.involvedObject", name)
			}
			warnings = append(warnings, config.Problem{File: path, Path: at(""), Msg: msg})
			continue
		}
		for _, ns := range scope.InformerNamespaces(r.Namespaced) {
			c := check{r.GVR.String(), ns}
			if done[c] {
				continue
			}
			done[c] = true
			denied, err := listWatchDenied(ctx, cs, r, ns)
			if err != nil {
				return nil, nil, err
			}
			for _, verb := range denied {
				problems = append(problems, config.Problem{File: path, Path: at(ns), Msg: fmt.Sprintf(
					"not allowed to %s %s %s, which enrichment needs (Events about them are sent without data.involvedObject)", verb, r.GVR.Resource, namespacePhrase(ns))})
			}
		}
	}
	return problems, warnings, nil
}
