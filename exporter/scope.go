package exporter

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
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
func scopeIDs(r *rule, res Resource) ([]scopeID, error) {
	sel, err := labels.Parse(r.cfg.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("labelSelector: %w", err)
	}
	fsel, err := fields.ParseSelector(r.cfg.FieldSelector)
	if err != nil {
		return nil, fmt.Errorf("fieldSelector: %w", err)
	}
	nss := append([]string(nil), r.cfg.Namespaces...)
	if !res.Namespaced || len(nss) == 0 {
		nss = []string{""}
	}
	if res.Namespaced && nss[0] == "" && len(r.cfg.ExcludeNamespaces) > 0 {
		ex := append([]string(nil), r.cfg.ExcludeNamespaces...)
		sort.Strings(ex)
		sels := []fields.Selector{fsel}
		for _, ns := range ex {
			sels = append(sels, fields.OneTermNotEqualSelector("metadata.namespace", ns))
		}
		fsel = fields.AndSelectors(sels...)
	}
	excluded := map[string]bool{}
	for _, ns := range r.cfg.ExcludeNamespaces {
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

// route is one sink a scope feeds.
type route struct {
	sink *sinkRunner
	// skipInitial: objects of the initial list become the sink's baseline
	// without an event (initialList: skip on every rule of this route).
	skipInitial bool
}

// scope is one informer and the rules and sinks it serves.
type scope struct {
	id       scopeID
	res      Resource
	rules    []*rule
	routes   []*route
	informer cache.SharedIndexInformer
	stop     chan struct{}
	started  sync.Once
	ex       *Exporter
	log      *zap.Logger
}

func newScope(ex *Exporter, id scopeID, res Resource, client dynamic.Interface) *scope {
	s := &scope{id: id, res: res, ex: ex, stop: make(chan struct{}), log: ex.log.With(zap.Stringer("scope", id))}
	tweak := func(o *metav1.ListOptions) {
		o.LabelSelector = id.Label
		o.FieldSelector = id.Field
	}
	s.informer = dynamicinformer.NewFilteredDynamicInformer(client, id.GVR, id.Namespace, ex.cfg.ResyncPeriod.Duration, cache.Indexers{}, tweak).Informer()
	_ = s.informer.SetTransform(s.transform)
	_ = s.informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		s.log.Info("watch ended; the informer lists again", zap.Error(err))
	})
	return s
}

// addRoute routes the scope to a sink, merging the initial-list mode.
func (s *scope) addRoute(sr *sinkRunner, skipInitial bool) {
	for _, r := range s.routes {
		if r.sink == sr {
			r.skipInitial = r.skipInitial && skipInitial
			return
		}
	}
	s.routes = append(s.routes, &route{sink: sr, skipInitial: skipInitial})
}

// start registers the handler and runs the informer until stopped; later
// calls do nothing.
func (s *scope) start() error {
	var err error
	s.started.Do(func() {
		if _, err = s.informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
			AddFunc:    s.onAdd,
			UpdateFunc: s.onUpdate,
			DeleteFunc: s.onDelete,
		}); err != nil {
			err = fmt.Errorf("scope %s: %w", s.id, err)
			return
		}
		go s.informer.Run(s.stop)
	})
	return err
}

// transform shrinks objects before they enter the cache, and gives them the
// apiVersion and kind the events carry.
func (s *scope) transform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		u.SetAPIVersion(s.res.APIVersion())
		u.SetKind(s.res.GVK.Kind)
	}
	return u, nil
}

func (s *scope) keyOf(u *unstructured.Unstructured) Key {
	return Key{GVR: s.id.GVR, Namespace: u.GetNamespace(), Name: u.GetName()}
}

func (s *scope) onAdd(obj any, isInInitialList bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	k := s.keyOf(u)
	for _, r := range s.routes {
		if isInInitialList && r.skipInitial && putIfAbsent(r.sink.store, k, recordOf(u)) {
			continue
		}
		r.sink.enqueue(k)
	}
}

func (s *scope) onUpdate(oldObj, newObj any) {
	u, ok := newObj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	k := s.keyOf(u)
	resync := oldObj.(*unstructured.Unstructured).GetResourceVersion() == u.GetResourceVersion()
	for _, r := range s.routes {
		// A resync queues only what a sink does not have yet (a dropped or
		// lost delivery); everything else emits nothing.
		if resync {
			if rec, ok := r.sink.store.Get(k); ok && rec.UID == string(u.GetUID()) && rec.ResourceVersion == u.GetResourceVersion() {
				continue
			}
		}
		r.sink.enqueue(k)
	}
}

func (s *scope) onDelete(obj any) {
	recovered := false
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, recovered = d.Obj, true
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	k := s.keyOf(u)
	s.ex.tombstones.put(k, tombstone{obj: u, recovered: recovered})
	for _, r := range s.routes {
		r.sink.enqueue(k)
	}
}

// get returns the object of k if this scope holds it.
func (s *scope) get(k Key) *unstructured.Unstructured {
	if s.id.Namespace != "" && s.id.Namespace != k.Namespace {
		return nil
	}
	item, ok, err := s.informer.GetIndexer().GetByKey(k.cacheKey())
	if err != nil || !ok {
		return nil
	}
	u, _ := item.(*unstructured.Unstructured)
	return u
}

// covers reports whether the scope's namespace admits k (selectors aside).
func (s *scope) covers(k Key) bool {
	return s.id.Namespace == "" || s.id.Namespace == k.Namespace
}

// tombstones keeps the final state of deleted objects until no sink needs it.
type tombstones struct {
	mu sync.Mutex
	m  map[Key]tombstone
}

func (t *tombstones) put(k Key, ts tombstone) {
	t.mu.Lock()
	t.m[k] = ts
	t.mu.Unlock()
}

func (t *tombstones) get(k Key) *tombstone {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ts, ok := t.m[k]; ok {
		return &ts
	}
	return nil
}

// prune drops tombstones that no sink's delivered state refers to.
func (t *tombstones) prune(stores []Store) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, ts := range t.m {
		needed := false
		for _, st := range stores {
			if r, ok := st.Get(k); ok && r.UID == string(ts.obj.GetUID()) {
				needed = true
				break
			}
		}
		if !needed {
			delete(t.m, k)
		}
	}
}

func parseSelector(s string) (string, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return "", fmt.Errorf("namespaceSelector: %w", err)
	}
	return sel.String(), nil
}
