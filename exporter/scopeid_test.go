package exporter

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// TestScopeIDs: the informers a rule needs, as the API server is asked for
// them: one per listed namespace, or one over all namespaces with the
// excluded ones as field selector terms; selectors normalised so that
// equal rules share an informer.
func TestScopeIDs(t *testing.T) {
	type want = []scopeID
	cmID := func(ns, label, field string) scopeID {
		return scopeID{GVR: cmRes.GVR, Namespace: ns, Label: label, Field: field}
	}
	for _, c := range []struct {
		name    string
		w       config.Watch
		res     resource.Resource
		want    want
		wantErr string
	}{
		{"all namespaces", config.Watch{}, cmRes, want{cmID("", "", "")}, ""},
		{"listed namespaces, in order", config.Watch{Namespaces: []string{"b", "a"}}, cmRes, want{cmID("b", "", ""), cmID("a", "", "")}, ""},
		{"listed and excluded namespace dropped", config.Watch{Namespaces: []string{"a", "b", "c"}, ExcludeNamespaces: []string{"b"}}, cmRes,
			want{cmID("a", "", ""), cmID("c", "", "")}, ""},
		{"every listed namespace excluded", config.Watch{Namespaces: []string{"a"}, ExcludeNamespaces: []string{"a"}}, cmRes, want{}, ""},
		{"excluded over all namespaces: sorted field terms", config.Watch{ExcludeNamespaces: []string{"kube-system", "default"}}, cmRes,
			want{cmID("", "", "metadata.namespace!=default,metadata.namespace!=kube-system")}, ""},
		{"excluded and a field selector", config.Watch{ExcludeNamespaces: []string{"x"}, FieldSelector: "metadata.name=web"}, cmRes,
			want{cmID("", "", "metadata.name=web,metadata.namespace!=x")}, ""},
		{"label selector normalised", config.Watch{LabelSelector: " tier=web , app in (b,a),!legacy"}, cmRes,
			want{cmID("", "app in (a,b),!legacy,tier=web", "")}, ""},
		{"label and field selector in a namespace", config.Watch{Namespaces: []string{"prod"}, LabelSelector: "app=web", FieldSelector: "metadata.name!=x"}, cmRes,
			want{cmID("prod", "app=web", "metadata.name!=x")}, ""},
		{"escaped field selector value", config.Watch{FieldSelector: `metadata.name=a\,b`}, cmRes, want{cmID("", "", `metadata.name=a\,b`)}, ""},
		{"cluster-scoped: namespaces ignored", config.Watch{Namespaces: []string{"a", "b"}}, nodeRes, want{{GVR: nodeRes.GVR}}, ""},
		{"cluster-scoped: no namespace exclusion terms", config.Watch{ExcludeNamespaces: []string{"a"}, LabelSelector: "role=worker"}, nodeRes,
			want{{GVR: nodeRes.GVR, Label: "role=worker"}}, ""},
		{"bad label selector", config.Watch{LabelSelector: "a=(b"}, cmRes, nil, "labelSelector:"},
		{"bad field selector", config.Watch{FieldSelector: "metadata.name"}, cmRes, nil, "fieldSelector:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := scopeIDs(c.w, c.res)
			if c.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
					t.Fatalf("scopeIDs error = %v, want one starting with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 && len(c.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("scopeIDs =\n %#v\nwant\n %#v", got, c.want)
			}
			// ListScopes is the same LISTs, as a reader of the feed sees them.
			ls, err := ListScopes(c.w, c.res)
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) != len(got) {
				t.Fatalf("ListScopes returned %d scopes, scopeIDs %d", len(ls), len(got))
			}
			for i, id := range got {
				if l := (ListScope{Namespace: id.Namespace, LabelSelector: id.Label, FieldSelector: id.Field}); ls[i] != l {
					t.Errorf("ListScopes[%d] = %+v, want %+v", i, ls[i], l)
				}
			}
		})
	}
}

// TestScopeIDsShared: rules that say the same thing differently share
// one informer; rules that differ do not.
func TestScopeIDsShared(t *testing.T) {
	for _, c := range []struct {
		name   string
		a, b   config.Watch
		shared bool
	}{
		{"label order", config.Watch{LabelSelector: "a=1,b=2"}, config.Watch{LabelSelector: "b=2, a=1"}, true},
		{"set order", config.Watch{LabelSelector: "app in (x,y)"}, config.Watch{LabelSelector: "app in (y,x)"}, true},
		{"exclusion order", config.Watch{ExcludeNamespaces: []string{"a", "b"}}, config.Watch{ExcludeNamespaces: []string{"b", "a"}}, true},
		// The same LIST, written as an exclusion or as its field term.
		{"exclusion vs its field term", config.Watch{ExcludeNamespaces: []string{"a"}}, config.Watch{FieldSelector: "metadata.namespace!=a"}, true},
		{"other label", config.Watch{LabelSelector: "a=1"}, config.Watch{LabelSelector: "a=2"}, false},
		{"exclusion vs none", config.Watch{ExcludeNamespaces: []string{"a"}}, config.Watch{}, false},
		{"namespace vs all", config.Watch{Namespaces: []string{"a"}}, config.Watch{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := scopeIDs(c.a, cmRes)
			if err != nil {
				t.Fatal(err)
			}
			b, err := scopeIDs(c.b, cmRes)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != 1 || len(b) != 1 {
				t.Fatalf("scopes %v and %v, want one each", a, b)
			}
			if (a[0] == b[0]) != c.shared {
				t.Errorf("%v == %v: %v, want %v", a[0], b[0], a[0] == b[0], c.shared)
			}
			if (a[0].String() == b[0].String()) != c.shared {
				t.Errorf("names %q and %q: equal %v, want %v", a[0], b[0], a[0].String() == b[0].String(), c.shared)
			}
		})
	}
}

// TestScopeIDString: a scope's name is the kubectl command line of its
// list, which logs, /readyz and kubefeed_informer_* show.
func TestScopeIDString(t *testing.T) {
	for _, c := range []struct {
		id   scopeID
		want string
	}{
		{scopeID{GVR: cmRes.GVR}, "configmaps"},
		{scopeID{GVR: deployRes.GVR, Namespace: "prod"}, "deployments.apps -n prod"},
		{scopeID{GVR: nodeRes.GVR, Label: "role=worker"}, "nodes -l role=worker"},
		{scopeID{GVR: widgetRes.GVR, Namespace: "a~b", Label: "app in (a,b)", Field: "metadata.namespace!=x"},
			"widgets.example.com -n a~b -l app in (a,b) --field-selector metadata.namespace!=x"},
		{scopeID{GVR: cmRes.GVR, Field: "metadata.name=a/b"}, "configmaps --field-selector metadata.name=a/b"},
	} {
		t.Run(c.want, func(t *testing.T) {
			if got := c.id.String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
		})
	}
}

// TestParseSelector: a namespaceSelector is normalised like a rule's
// labelSelector, so rules sharing a selector share its namespace watch.
func TestParseSelector(t *testing.T) {
	for _, c := range []struct {
		in, want, wantErr string
	}{
		{"team=shop", "team=shop", ""},
		{" env in (prod,dev), team=shop", "env in (dev,prod),team=shop", ""},
		{"team", "team", ""},
		{"!team", "!team", ""},
		{"team=(", "", "namespaceSelector:"},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := parseSelector(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
					t.Fatalf("parseSelector(%q) error = %v, want one starting with %q", c.in, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("parseSelector(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}
