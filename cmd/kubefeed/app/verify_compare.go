package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// liveObject is an object a LIST returned, in the feed's representation
// (decoded with json.Number, without managedFields).
type liveObject struct {
	obj     map[string]any
	uid, rv string
	created time.Time
	scope   *verifyScope
}

// Difference kinds.
const (
	diffMissing = "missing" // in the cluster, not in the feed
	diffExtra   = "extra"   // in the feed, gone from the cluster
	diffVersion = "version" // both, at other versions that differ
	diffUID     = "uid"     // both, another incarnation
)

type side struct {
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceVersion"`
	EventID         string `json:"eventId,omitempty"`
}

// difference is one object that differs.
type difference struct {
	Object  string       `json:"object"`
	Key     consumer.Key `json:"key"`
	Problem string       `json:"problem"`
	Feed    *side        `json:"feed,omitempty"`
	Cluster *side        `json:"cluster,omitempty"`
	Paths   []string     `json:"paths,omitempty"`
	scope   *verifyScope // the live object's scope, for the re-check
}

// listScopes LISTs every scope, page by page; an object in several scopes
// belongs to the first rule (the one that decides how it is shown).
func listScopes(ctx context.Context, dyn dynamic.Interface, scopes []*verifyScope) (map[consumer.Key]*liveObject, error) {
	out := map[consumer.Key]*liveObject{}
	for _, s := range scopes {
		opts := metav1.ListOptions{LabelSelector: s.label.String(), FieldSelector: s.field, Limit: 500}
		for {
			l, err := s.client(dyn).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", describeScope(s), err)
			}
			for i := range l.Items {
				k := s.keyOf(l.Items[i].GetNamespace(), l.Items[i].GetName())
				if _, ok := out[k]; ok {
					continue
				}
				lo, err := toLive(&l.Items[i], s)
				if err != nil {
					return nil, err
				}
				out[k] = lo
			}
			if opts.Continue = l.GetContinue(); opts.Continue == "" {
				break
			}
		}
	}
	return out, nil
}

func describeScope(s *verifyScope) string {
	d := s.res.GVR.Resource
	if s.res.GVR.Group != "" {
		d += "." + s.res.GVR.Group
	}
	if s.namespace != "" {
		d += " -n " + s.namespace
	}
	return d
}

func toLive(u *unstructured.Unstructured, s *verifyScope) (*liveObject, error) {
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		u.SetAPIVersion(s.res.APIVersion())
		u.SetKind(s.res.GVK.Kind)
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return nil, fmt.Errorf("encode %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	var obj map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&obj); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &liveObject{obj: obj, uid: string(u.GetUID()), rv: u.GetResourceVersion(), created: u.GetCreationTimestamp().Time, scope: s}, nil
}

// getLive GETs one object again; nil when it is gone or out of scope now.
func getLive(ctx context.Context, dyn dynamic.Interface, s *verifyScope, k consumer.Key) (*liveObject, error) {
	var c dynamic.ResourceInterface = dyn.Resource(s.res.GVR)
	if s.res.Namespaced {
		c = dyn.Resource(s.res.GVR).Namespace(k.Namespace)
	}
	u, err := c.Get(ctx, k.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", k, err)
	}
	if !s.label.Matches(labels.Set(u.GetLabels())) {
		return nil, nil
	}
	return toLive(u, s)
}

// compareOne says how the feed's entry and the live object differ; nil when
// they match.
func compareOne(k consumer.Key, fe *consumer.Entry, lo *liveObject) *difference {
	d := &difference{Object: k.String(), Key: k}
	if fe != nil {
		d.Feed = &side{UID: fe.UID, ResourceVersion: fe.ResourceVersion, EventID: fe.EventID}
	}
	if lo != nil {
		d.Cluster = &side{UID: lo.uid, ResourceVersion: lo.rv}
		d.scope = lo.scope
	}
	switch {
	case fe == nil && lo == nil:
		return nil
	case fe == nil:
		d.Problem = diffMissing
	case lo == nil:
		d.Problem = diffExtra
	case fe.UID != lo.uid:
		d.Problem = diffUID
	case fe.ResourceVersion == lo.rv:
		return nil
	default:
		// Another version: it matches when the versions differ only in what
		// the rule never reports (ignored, redacted, generation alone).
		paths := visiblePaths(fe, lo)
		if len(paths) == 0 {
			return nil
		}
		d.Problem, d.Paths = diffVersion, paths
	}
	return d
}

func visiblePaths(fe *consumer.Entry, lo *liveObject) []string {
	if fe.Truncated {
		return []string{"(the feed holds only the object's identity: it was too large for the sink)"}
	}
	live := lo.obj
	if lo.scope.redact != nil {
		live = lo.scope.redact.Object(live)
	}
	var paths []string
	leafDiff(&paths, "", fe.Object, live)
	var kept []string
	onlyGeneration, onlyStatus := true, true
	for _, p := range paths {
		if lo.scope.ignore.Match(p) {
			continue
		}
		kept = append(kept, p)
		onlyGeneration = onlyGeneration && p == filters.GenerationPath
		onlyStatus = onlyStatus && (p == "/status" || strings.HasPrefix(p, "/status/"))
	}
	if onlyGeneration || (lo.scope.w.IgnoreStatusOnly && onlyStatus) {
		return nil
	}
	return kept
}

// absent marks a side of leafDiff that has no value.
type absentT struct{}

var absent = absentT{}

// leafDiff appends the paths of the leaves where a and b differ; a subtree
// present on one side only counts leaf by leaf, so ignore patterns apply
// however a change is shaped.
func leafDiff(out *[]string, path string, a, b any) {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	if aIsMap || bIsMap {
		if !(aIsMap || a == absent) || !(bIsMap || b == absent) {
			*out = append(*out, path)
			return
		}
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			av, ok := am[k]
			if !ok {
				av = absent
			}
			bv, ok := bm[k]
			if !ok {
				bv = absent
			}
			leafDiff(out, path+"/"+jsonpatch.EscapeToken(k), av, bv)
		}
		return
	}
	as, aIsSlice := a.([]any)
	bs, bIsSlice := b.([]any)
	if aIsSlice || bIsSlice {
		if !(aIsSlice || a == absent) || !(bIsSlice || b == absent) {
			*out = append(*out, path)
			return
		}
		for i := 0; i < max(len(as), len(bs)); i++ {
			var av, bv any = absent, absent
			if i < len(as) {
				av = as[i]
			}
			if i < len(bs) {
				bv = bs[i]
			}
			leafDiff(out, path+"/"+strconv.Itoa(i), av, bv)
		}
		return
	}
	if a != b {
		*out = append(*out, path)
	}
}
