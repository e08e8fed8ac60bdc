package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/filters"
)

// verifyScope is one LIST verify makes, scoped as the exporter's
// informers are (exporter.ListScopes). Excluded namespaces go to the API
// server as field selectors.
type verifyScope struct {
	rule       int // index in cfg.Watch
	w          config.Watch
	res        resource.Resource
	namespace  string // "" for all namespaces or cluster-scoped
	label      labels.Selector
	field      string
	excluded   map[string]bool
	ignore     filters.Patterns
	redact     *filters.Redactor
	skipsFirst bool // initialList: skip
}

// notCompared is a rule whose feed is incomplete by design.
type notCompared struct {
	Rule     int    `json:"rule"`
	Resource string `json:"resource"`
	Reason   string `json:"reason"`
}

// verifyScopes resolves the rules routed to sink and computes their LIST
// scopes; namespaceSelector rules list the namespaces that match now.
// Problems of the config are usage errors; API failures runtime errors.
func verifyScopes(ctx context.Context, cfg *config.Config, sink string, r resource.Resolver, dyn dynamic.Interface) ([]*verifyScope, []notCompared, error) {
	var key []byte
	if cfg.RedactionKeyFile != "" {
		b, err := os.ReadFile(cfg.RedactionKeyFile)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("redactionKeyFile: %w", err))
		}
		key = []byte(strings.TrimSpace(string(b)))
	}
	var out []*verifyScope
	var skipped []notCompared
	for i, w := range cfg.Watch {
		if len(w.Sinks) > 0 && !contains(w.Sinks, sink) {
			continue
		}
		if w.Filter != "" {
			skipped = append(skipped, notCompared{i, w.Resource, "it has a filter: the feed holds only the changes that match"})
			continue
		}
		if len(w.Events) > 0 && len(w.Events) < 3 {
			skipped = append(skipped, notCompared{i, w.Resource, "it selects events " + strings.Join(w.Events, ",") + ": the feed does not hold every change"})
			continue
		}
		res, err := r.Resolve(w.Resource)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d].resource: %w", i, err))
		}
		base := verifyScope{rule: i, w: w, res: res, excluded: map[string]bool{}, skipsFirst: w.InitialList != config.InitialListEmit}
		if base.label, err = labels.Parse(w.LabelSelector); err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d].labelSelector: %w", i, err))
		}
		if _, err := fields.ParseSelector(w.FieldSelector); err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d].fieldSelector: %w", i, err))
		}
		ign, err := filters.ParsePatterns(w.IgnorePaths)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d].ignorePaths: %w", i, err))
		}
		base.ignore = append(append(filters.Patterns{}, filters.DefaultIgnore...), ign...)
		rp, err := filters.ParsePatterns(w.RedactPaths)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d].redactPaths: %w", i, err))
		}
		if res.GVR.Group == "" && res.GVR.Resource == "secrets" && w.Redact != "none" {
			rp = append(append(filters.Patterns{}, filters.SecretPaths...), rp...)
		}
		if len(rp) > 0 {
			var k []byte
			if w.Redact == "hash" {
				k = key
			}
			base.redact = filters.NewRedactor(rp, k)
		}
		for _, ns := range w.ExcludeNamespaces {
			base.excluded[ns] = true
		}
		if res.Namespaced && w.NamespaceSelector != "" {
			nss, err := selectedNamespaces(ctx, dyn, w.NamespaceSelector)
			if err != nil {
				return nil, nil, err
			}
			if len(nss) == 0 {
				continue // no namespace matches: nothing to list, nothing expected
			}
			w.Namespaces = nss
		}
		lists, err := exporter.ListScopes(w, res)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("watch[%d]: %w", i, err))
		}
		for _, l := range lists {
			s := base
			s.namespace, s.field = l.Namespace, l.FieldSelector
			out = append(out, &s)
		}
	}
	return out, skipped, nil
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

func selectedNamespaces(ctx context.Context, dyn dynamic.Interface, selector string) ([]string, error) {
	l, err := dyn.Resource(namespacesGVR).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, runtimeErr(fmt.Errorf("list namespaces %s: %w", selector, err))
	}
	var out []string
	for _, it := range l.Items {
		out = append(out, it.GetName())
	}
	sort.Strings(out)
	return out, nil
}

// covers reports whether an object the feed holds belongs to the scope:
// resource, namespace and label selector (field selectors other than the
// excluded namespaces are left to the API server and not re-checked).
func (s *verifyScope) covers(e consumer.Entry) bool {
	k := e.Key
	if k.Group != s.res.GVR.Group || k.Resource != s.res.GVR.Resource {
		return false
	}
	if s.namespace != "" && k.Namespace != s.namespace || s.excluded[k.Namespace] {
		return false
	}
	if e.Truncated {
		// Only the identity arrived (older kubefeed versions kept no
		// labels in it): the LIST side applied the selector.
		return true
	}
	md, _ := e.Object["metadata"].(map[string]any)
	lm, _ := md["labels"].(map[string]any)
	set := labels.Set{}
	for k, v := range lm {
		if sv, ok := v.(string); ok {
			set[k] = sv
		}
	}
	return s.label.Matches(set)
}

func (s *verifyScope) keyOf(namespace, name string) consumer.Key {
	return consumer.Key{Group: s.res.GVR.Group, Resource: s.res.GVR.Resource, Namespace: namespace, Name: name}
}

func (s *verifyScope) client(dyn dynamic.Interface) dynamic.ResourceInterface {
	if s.res.Namespaced && s.namespace != "" {
		return dyn.Resource(s.res.GVR).Namespace(s.namespace)
	}
	return dyn.Resource(s.res.GVR)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
