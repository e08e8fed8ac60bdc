package exporter

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
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
func scopeIDs(w config.Watch, res Resource) ([]scopeID, error) {
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
		sels := []fields.Selector{fsel}
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

// route is one sink a scope feeds.
type route struct {
	sink *sinkRunner
	// restoreGap is set when the sink's checkpoint knows this scope: the
	// initial list is compared with it, and its changes are recovered.
	restoreGap *gap
	// skipInitial: objects of the initial list become the sink's baseline
	// without an event (initialList: skip on every rule of this route).
	skipInitial bool
}

// scope is one informer and the rules and sinks it serves.
type scope struct {
	id   scopeID
	name string // id.String(), computed once: records and metrics share it
	// observedBy counts notifications by event type (ADDED, MODIFIED, DELETED).
	observedBy map[string]prometheus.Counter
	res        Resource
	rules      []*rule
	routes     []*route
	informer   cache.SharedIndexInformer
	stop       chan struct{}
	started    sync.Once
	ex         *Exporter
	log        *zap.Logger

	// Relist tracking: the first list is the initial one; any later list
	// (watch expired, API server restarted) is a relist whose items are
	// recovered changes, after a gap marker.
	lists     atomic.Int64
	lastEvent atomic.Int64 // unix nanos of the last notification
	relistMu  sync.Mutex
	relisted  map[Key]string // key -> resourceVersion listed by the relist
	relistGap *gap

	// Watch progress: the current watch and when it last delivered
	// anything (an event or a bookmark), for the stall watchdog.
	watchMu      sync.Mutex
	watch        *trackedWatch
	lastProgress atomic.Int64
}

// trackedWatch passes a watch's events through and records progress.
type trackedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	done  chan struct{}
	stop  sync.Once
}

func (s *scope) track(w watch.Interface) watch.Interface {
	t := &trackedWatch{inner: w, out: make(chan watch.Event), done: make(chan struct{})}
	s.lastProgress.Store(time.Now().UnixNano())
	s.watchMu.Lock()
	s.watch = t
	s.watchMu.Unlock()
	go func() {
		defer close(t.out)
		for ev := range w.ResultChan() {
			s.lastProgress.Store(time.Now().UnixNano())
			select {
			case t.out <- ev:
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *trackedWatch) ResultChan() <-chan watch.Event { return t.out }
func (t *trackedWatch) Stop() {
	t.stop.Do(func() {
		close(t.done)
		t.inner.Stop()
	})
}

// restartStalledWatch stops the current watch when it has delivered nothing
// (no event, no bookmark) for longer than timeout; the reflector then
// watches again from its last resourceVersion. It reports whether it did.
func (s *scope) restartStalledWatch(timeout time.Duration) bool {
	s.watchMu.Lock()
	w := s.watch
	s.watchMu.Unlock()
	if w == nil || time.Since(time.Unix(0, s.lastProgress.Load())) < timeout {
		return false
	}
	s.log.Warn("watch made no progress; restarting it", zap.Duration("timeout", timeout))
	s.lastProgress.Store(time.Now().UnixNano())
	w.Stop()
	return true
}

// listWatch lists and watches one scope; it opts out of client-go's
// watch-list streaming so that every (re)list goes through List, where
// relists are seen.
type listWatch struct{ cache.ListWatch }

func (*listWatch) IsWatchListSemanticsUnSupported() bool { return true }

func newScope(ex *Exporter, id scopeID, res Resource, client dynamic.Interface) *scope {
	s := &scope{id: id, name: id.String(), res: res, ex: ex, stop: make(chan struct{}), log: ex.log.With(zap.Stringer("scope", id))}
	s.observedBy = map[string]prometheus.Counter{}
	for _, typ := range []string{config.EventAdded, config.EventModified, config.EventDeleted} {
		s.observedBy[typ] = ex.metrics.observed.WithLabelValues(resourceLabel(res), typ)
	}
	rc := client.Resource(id.GVR).Namespace(id.Namespace)
	lw := &listWatch{cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector, o.FieldSelector = id.Label, id.Field
			l, err := rc.List(ctx, o)
			if err == nil {
				s.onList(l)
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector, o.FieldSelector = id.Label, id.Field
			w, err := rc.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return s.track(w), nil
		},
	}}
	s.informer = cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, ex.cfg.ResyncPeriod.Duration, cache.Indexers{})
	_ = s.informer.SetTransform(s.transform)
	_ = s.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		ex.metrics.watchErrors.WithLabelValues(resourceLabel(res)).Inc()
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

// onList runs in the reflector after every successful list. A list after
// the first is a relist: what it returns arrives as recovered changes.
func (s *scope) onList(l *unstructured.UnstructuredList) {
	if s.lists.Add(1) == 1 {
		return
	}
	items := make(map[Key]string, len(l.Items))
	for i := range l.Items {
		it := &l.Items[i]
		items[Key{GVR: s.id.GVR, Namespace: it.GetNamespace(), Name: it.GetName()}] = it.GetResourceVersion()
	}
	from := time.Unix(0, s.lastEvent.Load())
	g := newGap(s.ex.cfg.Cluster, s.id, from, s.ex.now(), GapRelist)
	s.relistMu.Lock()
	s.relisted, s.relistGap = items, g
	s.relistMu.Unlock()
	s.ex.relists.Add(1)
	s.ex.metrics.relists.WithLabelValues(resourceLabel(s.res)).Inc()
	s.log.Info("relisted after the watch ended; changes since are sent as recovered", zap.Int("objects", len(items)))
}

// recoveredBy returns the relist gap when this notification comes from the
// last relist (same key and resourceVersion).
func (s *scope) recoveredBy(k Key, rv string) *gap {
	s.relistMu.Lock()
	defer s.relistMu.Unlock()
	if s.relisted == nil {
		return nil
	}
	if have, ok := s.relisted[k]; ok && have == rv {
		delete(s.relisted, k)
		return s.relistGap
	}
	return nil
}

// deletionGap is the gap of a deletion seen only through a relist.
func (s *scope) deletionGap() *gap {
	s.relistMu.Lock()
	defer s.relistMu.Unlock()
	if s.relistGap == nil {
		s.relistGap = newGap(s.ex.cfg.Cluster, s.id, time.Unix(0, s.lastEvent.Load()), s.ex.now(), GapRelist)
	}
	return s.relistGap
}

// observed counts a notification; the counters are bound once per scope,
// so the handler does no label lookup.
func (s *scope) observed(typ string) {
	if s.observedBy == nil {
		return
	}
	s.observedBy[typ].Inc()
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
	s.lastEvent.Store(s.ex.now().UnixNano())
	s.observed(config.EventAdded)
	relist := s.recoveredBy(k, u.GetResourceVersion())
	for _, r := range s.routes {
		if isInInitialList && r.skipInitial && putIfAbsent(r.sink.store, k, s.record(u)) {
			continue
		}
		// Each route decides for itself: a restored checkpoint belongs to
		// one sink and must not mark the others' changes recovered.
		g := relist
		if isInInitialList && r.restoreGap != nil {
			g = r.restoreGap
		}
		if g != nil {
			r.sink.markRecovered(k, g)
		}
		r.sink.enqueue(k)
	}
}

func (s *scope) record(u *unstructured.Unstructured) Record {
	r := recordOf(u)
	r.Scope = s.name
	return r
}

func (s *scope) onUpdate(oldObj, newObj any) {
	u, ok := newObj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	k := s.keyOf(u)
	resync := oldObj.(*unstructured.Unstructured).GetResourceVersion() == u.GetResourceVersion()
	var g *gap
	if !resync {
		s.observed(config.EventModified)
		s.lastEvent.Store(s.ex.now().UnixNano())
		g = s.recoveredBy(k, u.GetResourceVersion())
	}
	for _, r := range s.routes {
		// A resync queues only what a sink does not have yet (a dropped or
		// lost delivery); everything else emits nothing.
		if resync {
			if rec, ok := r.sink.store.Get(k); ok && rec.UID == string(u.GetUID()) && rec.ResourceVersion == u.GetResourceVersion() {
				continue
			}
		}
		if g != nil {
			r.sink.markRecovered(k, g)
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
	s.lastEvent.Store(s.ex.now().UnixNano())
	s.observed(config.EventDeleted)
	s.ex.tombstones.put(k, tombstone{obj: u, recovered: recovered})
	var g *gap
	if recovered {
		g = s.deletionGap()
	}
	for _, r := range s.routes {
		if g != nil {
			r.sink.markRecovered(k, g)
		}
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
