package exporter

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// scopeID is what makes two informers different: rules with equal scopeIDs
// share one informer.
type scopeID struct {
	GVR       schema.GroupVersionResource
	Namespace string // "" for all namespaces or cluster-scoped resources
	Label     string // normalised label selector
	Field     string // normalised field selector, with excluded namespaces
}

func (id scopeID) String() string {
	var b strings.Builder
	b.WriteString(id.GVR.Resource)
	if id.GVR.Group != "" {
		b.WriteString("." + id.GVR.Group)
	}
	if id.Namespace != "" {
		b.WriteString(" -n " + id.Namespace)
	}
	if id.Label != "" {
		b.WriteString(" -l " + id.Label)
	}
	if id.Field != "" {
		b.WriteString(" --field-selector " + id.Field)
	}
	return b.String()
}

// scopeIDs returns the scopes a rule needs: one per listed namespace, or one
// for all namespaces with excluded namespaces filtered on the API server.
func scopeIDs(w config.Watch, res resource.Resource) ([]scopeID, error) {
	sel, err := labels.Parse(w.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("labelSelector: %w", err)
	}
	fsel, err := fields.ParseSelector(w.FieldSelector)
	if err != nil {
		return nil, fmt.Errorf("fieldSelector: %w", err)
	}
	nss := append([]string(nil), w.Namespaces...)
	if !res.Namespaced || len(nss) == 0 {
		nss = []string{""}
	}
	if res.Namespaced && nss[0] == "" && len(w.ExcludeNamespaces) > 0 {
		ex := append([]string(nil), w.ExcludeNamespaces...)
		sort.Strings(ex)
		var sels []fields.Selector
		if !fsel.Empty() {
			sels = append(sels, fsel)
		}
		for _, ns := range ex {
			sels = append(sels, fields.OneTermNotEqualSelector("metadata.namespace", ns))
		}
		fsel = fields.AndSelectors(sels...)
	}
	excluded := map[string]bool{}
	for _, ns := range w.ExcludeNamespaces {
		excluded[ns] = true
	}
	ids := make([]scopeID, 0, len(nss))
	for _, ns := range nss {
		if excluded[ns] {
			continue
		}
		ids = append(ids, scopeID{GVR: res.GVR, Namespace: ns, Label: sel.String(), Field: fsel.String()})
	}
	return ids, nil
}

// ListScope is one LIST the informers of a watch rule make: what a reader
// of the feed compares it with (kubefeed verify).
type ListScope struct {
	Namespace     string // "" for all namespaces or a cluster-scoped resource
	LabelSelector string
	FieldSelector string // with excluded namespaces as metadata.namespace!= terms
}

// ListScopes returns the LISTs of a rule on res. A namespaceSelector rule
// must be given the namespaces that match in w.Namespaces.
func ListScopes(w config.Watch, res resource.Resource) ([]ListScope, error) {
	ids, err := scopeIDs(w, res)
	if err != nil {
		return nil, err
	}
	out := make([]ListScope, 0, len(ids))
	for _, id := range ids {
		out = append(out, ListScope{Namespace: id.Namespace, LabelSelector: id.Label, FieldSelector: id.Field})
	}
	return out, nil
}

func parseSelector(s string) (string, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return "", fmt.Errorf("namespaceSelector: %w", err)
	}
	return sel.String(), nil
}

// legacyFieldScope is how a scope excluding namespaces with no field
// selector of its own was named before kubefeed normalised its selector:
// an empty first term, "--field-selector ,metadata.namespace!=…".
const legacyFieldScope = " --field-selector ,"

// canonicalScopeName is a scope name as this version names the same scope
// (checkpoint records of older versions carry the legacy form), and
// whether it changed.
func canonicalScopeName(name string) (string, bool) {
	if !strings.Contains(name, legacyFieldScope) {
		return name, false
	}
	return strings.Replace(name, legacyFieldScope, " --field-selector ", 1), true
}
