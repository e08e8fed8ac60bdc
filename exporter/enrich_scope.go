package exporter

import (
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// EnrichScope is where the metadata informers of enrichment watch, derived
// from the rules that say enrich: involvedObject. An Event names an object
// of its own namespace (the API server checks this for namespaced kinds),
// so when every enriching rule lists its namespaces, a namespaced kind is
// watched by one informer per namespace of their union and needs list/watch
// only there (Roles). A rule over all namespaces, or with a
// namespaceSelector (whose namespaces come and go), makes every namespaced
// kind cluster-wide. Cluster-scoped kinds (Node, Namespace,
// PersistentVolume) are always watched cluster-wide.
//
// kubefeed validate --cluster checks the permissions of the same scope.
type EnrichScope struct {
	// Rules are the indexes of the enriching rules, in config order.
	Rules []int
	// AllNamespaces is the index of the first enriching rule that watches
	// every namespace (no namespaces list, or a namespaceSelector); -1 when
	// every enriching rule lists its namespaces.
	AllNamespaces int
	// Namespaces is the sorted union of the namespaces the enriching rules
	// list, without the ones they exclude; nil when AllNamespaces >= 0.
	Namespaces []string

	ruleOf map[string]int // namespace → first enriching rule listing it
}

// EnrichScopeOf returns the enrichment scope of a config.
func EnrichScopeOf(cfg *config.Config) EnrichScope {
	s := EnrichScope{AllNamespaces: -1, ruleOf: map[string]int{}}
	for i, w := range cfg.Watch {
		if w.Enrich != config.EnrichInvolvedObject {
			continue
		}
		s.Rules = append(s.Rules, i)
		if len(w.Namespaces) == 0 || w.NamespaceSelector != "" {
			if s.AllNamespaces < 0 {
				s.AllNamespaces = i
			}
			continue
		}
		excluded := map[string]bool{}
		for _, ns := range w.ExcludeNamespaces {
			excluded[ns] = true
		}
		for _, ns := range w.Namespaces {
			if _, seen := s.ruleOf[ns]; !seen && !excluded[ns] {
				s.ruleOf[ns] = i
			}
		}
	}
	if s.AllNamespaces >= 0 {
		return s
	}
	for ns := range s.ruleOf {
		s.Namespaces = append(s.Namespaces, ns)
	}
	sort.Strings(s.Namespaces)
	return s
}

// InformerNamespaces returns the namespaces of the informers of one kind:
// metav1.NamespaceAll alone for a cluster-scoped kind or cluster-wide
// enrichment, otherwise the union of the rules' namespaces (possibly none).
func (s EnrichScope) InformerNamespaces(namespaced bool) []string {
	if !namespaced || s.AllNamespaces >= 0 {
		return []string{metav1.NamespaceAll}
	}
	return s.Namespaces
}

// RuleOf returns the enriching rule that needs an informer in ns (the
// first one listing it): the one whose enrich field a missing permission
// there is reported at. For metav1.NamespaceAll it is the rule that made
// enrichment cluster-wide, or else the first enriching rule; -1 when no
// rule enriches.
func (s EnrichScope) RuleOf(ns string) int {
	if i, ok := s.ruleOf[ns]; ok && ns != metav1.NamespaceAll {
		return i
	}
	if s.AllNamespaces >= 0 {
		return s.AllNamespaces
	}
	if len(s.Rules) > 0 {
		return s.Rules[0]
	}
	return -1
}
