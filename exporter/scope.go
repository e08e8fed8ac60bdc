package exporter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// resourceClient lists and watches one resource in one namespace (""
// for all); dynamic.ResourceInterface is one, and unit tests give fakes.
type resourceClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
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

// scopeTable is what handlers and workers read of a scope: an immutable
// snapshot, replaced whole when rules join or leave.
type scopeTable struct {
	rules  []*plan.Rule
	routes []route
}

// scope is one informer and the rules and sinks it serves.
type scope struct {
	id   scopeID
	name string // id.String(), computed once: records and metrics share it
	// gvr is id.GVR interned once (unique.Make): the handlers queue items of
	// it without a lookup per change.
	gvr unique.Handle[schema.GroupVersionResource]
	// observedBy counts notifications by event type (ADDED, MODIFIED, DELETED).
	observedBy map[string]prometheus.Counter
	res        resource.Resource
	tab        atomic.Pointer[scopeTable]
	informer   cache.SharedIndexInformer
	stop       chan struct{}
	started    sync.Once
	sh         *shared
	log        *zap.Logger

	// ready is set once the first list is in the cache and the sinks were
	// told (sentinels, restored keys queued).
	ready   atomic.Bool
	running atomic.Bool // the informer was started
	// warm: started while standing by, when handlers routed nothing; its
	// sinks compare its cache with their checkpoint when it leads.
	warm atomic.Bool
	// keepManagers: a rule of the scope asks attribution, so its objects
	// keep managedFields, as their JSON text (plan.ManagedFieldsText).
	keepManagers atomic.Bool
	// A warm standby's catch-up (catchup.go): the newest resourceVersion
	// its handlers saw, and the one they must reach before its keys are
	// delivered (0: none), until catchUpUntil (unix nanos).
	seenRV       atomic.Uint64
	catchUp      atomic.Uint64
	catchUpUntil atomic.Int64
	parkMu       sync.Mutex
	parked       []parkedKey // keys waiting for the catch-up
	caughtUp     bool
	lists        listCycles
	lastEvent    atomic.Int64 // unix nanos of the last notification

	// Watch progress: the current watch and when it last delivered
	// anything (an event or a bookmark), for the stall watchdog.
	watchMu      sync.Mutex
	watch        *trackedWatch
	lastProgress atomic.Int64
}

// listWatch lists and watches one scope. The reflector streams its
// (re)lists as a watch with sendInitialEvents (client-go's watch-list)
// where the API server serves them, and falls back to paged Lists where
// it does not; relists are told from the first list on both paths
// (listCycles).
// reserver is a Store that can make room ahead (state.MemoryStore).
type reserver interface{ Reserve(n int) }

type listWatch struct{ cache.ListWatch }

// newScope builds the informer of id over rc, resynced every resync (0:
// never).
func newScope(sh *shared, rc resourceClient, resync time.Duration, id scopeID, res resource.Resource) *scope {
	s := &scope{id: id, name: id.String(), gvr: unique.Make(id.GVR), res: res, sh: sh, stop: make(chan struct{}), log: sh.log.With(zap.Stringer("scope", id))}
	s.tab.Store(&scopeTable{})
	if fc, ok := rc.(*fastWatchClient); ok {
		fc.keep = &s.keepManagers
	}
	s.observedBy = map[string]prometheus.Counter{}
	for _, typ := range []string{config.EventAdded, config.EventModified, config.EventDeleted} {
		s.observedBy[typ] = sh.metrics.observed.WithLabelValues(resourceLabel(res), typ)
	}
	lw := &listWatch{cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector, o.FieldSelector = id.Label, id.Field
			if sh.shard != nil {
				o.ShardSelector = sh.shard.Selector()
			}
			l, err := rc.List(ctx, o)
			if err == nil {
				s.dropOutOfShard(l)
				s.onListPage(o, l)
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector, o.FieldSelector = id.Label, id.Field
			if sh.shard != nil {
				o.ShardSelector = sh.shard.Selector()
			}
			w, err := rc.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			var cycle uint64
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				cycle = s.lists.begin() // a watch-list: a list cycle streamed
			}
			return s.track(w, cycle), nil
		},
	}}
	s.informer = cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, resync, cache.Indexers{})
	_ = s.informer.SetTransform(s.transform)
	_ = s.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		sh.metrics.watchErrors.WithLabelValues(resourceLabel(res)).Inc()
		s.log.Info("watch ended; the informer lists again", zap.Error(err))
	})
	return s
}

func (s *scope) table() *scopeTable { return s.tab.Load() }

// update replaces the table with a changed copy. Callers hold the
// exporter's lock, so updates do not race each other.
func (s *scope) update(f func(t *scopeTable)) {
	old := s.tab.Load()
	t := &scopeTable{rules: append([]*plan.Rule(nil), old.rules...), routes: append([]route(nil), old.routes...)}
	f(t)
	s.tab.Store(t)
}

// addRoute routes the scope to a sink, merging the initial-list mode.
func (t *scopeTable) addRoute(sr *sinkRunner, skipInitial bool) {
	for i := range t.routes {
		if t.routes[i].sink == sr {
			t.routes[i].skipInitial = t.routes[i].skipInitial && skipInitial
			return
		}
	}
	t.routes = append(t.routes, route{sink: sr, skipInitial: skipInitial})
}

// start registers the handler, runs the informer until stopped, and calls
// synced once its first list is in the cache; later calls do nothing.
func (s *scope) start(synced func(*scope)) error {
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
		s.warm.Store(s.standingBy())
		s.running.Store(true)
		go s.informer.Run(s.stop)
		go func() {
			if cache.WaitForCacheSync(s.stop, s.informer.HasSynced) {
				synced(s)
			}
		}()
	})
	return err
}

// stopInformer stops the informer once.
func (s *scope) stopInformer() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

// transform shrinks objects before they enter the cache, and gives them the
// apiVersion and kind the events carry.
func (s *scope) transform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	if s.keepManagers.Load() {
		plan.ManagedFieldsText(u.Object)
	} else if md, ok := u.Object["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		u.SetAPIVersion(s.res.APIVersion())
		u.SetKind(s.res.GVK.Kind)
	}
	return u, nil
}

func (s *scope) newGap(reason string) func() *gap {
	return func() *gap {
		return newGap(s.sh.cluster, s.id, s.res, time.Unix(0, s.lastEvent.Load()), s.sh.now(), reason)
	}
}

// onListPage runs in the reflector after every successful List call (one
// per page).
func (s *scope) onListPage(o metav1.ListOptions, l *unstructured.UnstructuredList) {
	s.listEnded(s.lists.page(o, l, s.keyOf, s.newGap(gapRelist)))
}

// listEnded counts and logs a relist that just completed.
func (s *scope) listEnded(relisted bool, n int) {
	if !relisted {
		if s.standingBy() {
			return // nothing is recorded while standing by
		}
		// The first list (n is 0 for a cycle that ended nothing): every
		// sink routed here is about to record its n objects, except one
		// whose checkpoint knew the scope (restoreGap): it holds their
		// records already, and room for n more would stay unused.
		t := s.table()
		if t == nil {
			return
		}
		for _, r := range t.routes {
			if r.restoreGap != nil {
				continue
			}
			if rs, ok := r.sink.store.(reserver); ok {
				rs.Reserve(n)
			}
		}
		return
	}
	s.sh.relists.Add(1)
	s.sh.metrics.relists.WithLabelValues(resourceLabel(s.res)).Inc()
	s.log.Info("relisted after the watch ended; changes since are sent as recovered", zap.Int("objects", n))
}

// observed counts a notification; the counters are bound once per scope,
// so the handler does no label lookup.
func (s *scope) observed(typ string) {
	if s.observedBy == nil {
		return
	}
	s.observedBy[typ].Inc()
}

func (s *scope) keyOf(u *unstructured.Unstructured) state.Key {
	k, _ := s.keyAndMeta(u)
	return k
}

// keyAndMeta is keyOf with the object's metadata, read once.
func (s *scope) keyAndMeta(u *unstructured.Unstructured) (state.Key, plan.Meta) {
	m := plan.MetaOf(u)
	return state.Key{GVR: s.id.GVR, Namespace: m.Namespace, Name: m.Name}, m
}

// baseline is the record an initial-list object becomes when its rules
// skip the initial list: as if the first rule routed to sink delivered it.
// m is u's metadata, already read by the caller.
func (s *scope) baseline(t *scopeTable, u *unstructured.Unstructured, m plan.Meta, sink string) state.Record {
	r := plan.RecordFrom(u, m)
	r.Scope = s.name
	for _, rl := range t.rules {
		if rl.RoutesTo(sink) {
			r.Rule, r.Redact = rl.Index+1, rl.Redactor(s.res)
			break
		}
	}
	return r
}

func (s *scope) onAdd(obj any, isInInitialList bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	k, m := s.keyAndMeta(u)
	now := s.sh.now()
	s.lastEvent.Store(now.UnixNano())
	s.observed(config.EventAdded)
	it := s.itemOf(k)
	s.sh.observed.observe(it, m.UID, m.ResourceVersion, false, now)
	relist := s.lists.recoveredBy(k, m.ResourceVersion)
	s.noteSeen(m.ResourceVersion)
	if s.standingBy() {
		return // compared when leading (compareWarm)
	}
	t := s.table()
	for _, r := range t.routes {
		if isInInitialList && r.skipInitial && state.PutIfAbsent(r.sink.store, k, s.baseline(t, u, m, r.sink.name)) {
			continue
		}
		// Each route decides for itself: a restored checkpoint belongs to
		// one sink and must not mark the others' changes recovered.
		g := relist
		if isInInitialList && r.restoreGap != nil {
			g = r.restoreGap
		}
		r.sink.enqueue(it, g)
	}
}

func (s *scope) onUpdate(oldObj, newObj any) {
	u, ok := newObj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	old, _ := oldObj.(*unstructured.Unstructured)
	k, m := s.keyAndMeta(u)
	resync := old != nil && old.GetResourceVersion() == m.ResourceVersion
	it := s.itemOf(k)
	var g *gap
	if !resync {
		s.observed(config.EventModified)
		now := s.sh.now()
		s.lastEvent.Store(now.UnixNano())
		s.sh.observed.observe(it, m.UID, m.ResourceVersion, false, now)
		g = s.lists.recoveredBy(k, m.ResourceVersion)
	}
	s.noteSeen(m.ResourceVersion)
	if s.standingBy() {
		return
	}
	for _, r := range s.table().routes {
		// A resync queues only what a sink does not have yet (a dropped or
		// lost delivery); everything else emits nothing.
		if resync {
			if rec, ok := r.sink.store.Get(k); ok && rec.UID == m.UID && rec.ResourceVersion == m.ResourceVersion {
				continue
			}
		}
		r.sink.enqueue(it, g)
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
	k, m := s.keyAndMeta(u)
	now := s.sh.now()
	s.lastEvent.Store(now.UnixNano())
	s.observed(config.EventDeleted)
	it := s.itemOf(k)
	s.sh.observed.observe(it, m.UID, m.ResourceVersion, true, now)
	s.sh.tombstones.put(k, plan.Tombstone{Obj: u, Recovered: recovered})
	var g *gap
	if recovered {
		g = s.lists.deletionGap(s.newGap(gapRelist))
		// Seen by a relist: the cache is as new as the list, whatever
		// version the final state it had says. The list's version is the
		// cycle's own: the reflector sets LastSyncResourceVersion only
		// after Replace queued this deletion, which may be handled first.
		s.noteSeen(s.lists.lastListedRV())
	}
	s.noteSeen(m.ResourceVersion)
	if s.standingBy() {
		return // the tombstone is kept for compareWarm
	}
	for _, r := range s.table().routes {
		r.sink.enqueue(it, g)
	}
}

// prime gives a sink routed to this scope after it started what it
// missed: the objects in the cache (as baseline or as changes) and, when
// its checkpoint knew the scope, every restored key.
func (s *scope) prime(rt route) {
	if s.standingBy() {
		return // compareWarm does it when leading
	}
	t := s.table()
	for _, obj := range s.informer.GetIndexer().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		k, m := s.keyAndMeta(u)
		if rt.skipInitial && state.PutIfAbsent(rt.sink.store, k, s.baseline(t, u, m, rt.sink.name)) {
			continue
		}
		rt.sink.enqueue(s.itemOf(k), rt.restoreGap)
	}
	if rt.restoreGap != nil {
		rt.sink.store.Range(func(k state.Key, rec state.Record) bool {
			if rec.Scope == s.name && k.GVR == s.id.GVR && !isSentinel(k) {
				rt.sink.enqueue(s.itemOf(k), rt.restoreGap)
			}
			return true
		})
	}
}

// itemOf is the queue item of k, a key of this scope's resource.
func (s *scope) itemOf(k state.Key) item {
	if s.gvr == (unique.Handle[schema.GroupVersionResource]{}) { // a scope not made by newScope
		return keyItem(k)
	}
	return item{gvr: s.gvr, namespace: k.Namespace, name: k.Name}
}

// get returns the object of k if this scope holds it.
func (s *scope) get(k state.Key) *unstructured.Unstructured {
	if !s.covers(k) {
		return nil
	}
	item, ok, err := s.informer.GetIndexer().GetByKey(k.CacheKey())
	if err != nil || !ok {
		return nil
	}
	u, _ := item.(*unstructured.Unstructured)
	return u
}

// covers reports whether the scope's namespace admits k (selectors aside).
func (s *scope) covers(k state.Key) bool {
	return s.id.Namespace == "" || s.id.Namespace == k.Namespace
}
