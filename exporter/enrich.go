package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// Reasons an Event was sent without enrichment (the label of
// kubefeed_enrich_misses_total).
const (
	// missUnresolved: the involved kind is not served (or the reference is
	// malformed); it is looked up again after the resolve retry interval.
	missUnresolved = "unresolved"
	// missNotSynced: the kind's metadata informer has not finished its
	// first list (the first Events of a kind always miss).
	missNotSynced = "not_synced"
	// missNotCached: the object is not in the synced cache (not created
	// yet as far as the watch knows, already deleted, or another UID).
	missNotCached = "not_cached"
)

// lastApplied is never carried: SPEC.md keeps it out of every sink.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// enricher gives Events the metadata of the objects they are about, from
// metadata-only informers per involved kind: one cluster-wide, or one per
// namespace of the enriching rules when they all list theirs (EnrichScope).
// Informers start lazily, in the worker that first meets a kind (never in
// an informer handler); an object not in the cache is sent without
// enrichment and counted, never waited for. No request is made per Event.
type enricher struct {
	client metadata.Interface
	kinds  resource.KindResolver
	scope  EnrichScope
	log    *zap.Logger
	retry  time.Duration
	now    func() time.Time
	misses *prometheus.CounterVec

	mu      sync.RWMutex
	byKind  map[schema.GroupKind]*involvedKind
	stopped bool
	done    chan struct{}
}

// involvedKind is one kind Events point at: its informers, or why it has
// none and when to look again.
type involvedKind struct {
	res resource.Resource
	// informers by namespace; metav1.NamespaceAll for a cluster-scoped kind
	// or cluster-wide enrichment. nil: unresolved.
	informers map[string]cache.SharedIndexInformer
	retryAt   time.Time
}

// informerFor returns the informer that caches the objects of the kind in
// ns, or nil when none watches ns (outside the enriching rules'
// namespaces).
func (k *involvedKind) informerFor(ns string) cache.SharedIndexInformer {
	if inf, ok := k.informers[metav1.NamespaceAll]; ok {
		return inf
	}
	return k.informers[ns]
}

// synced reports whether every informer of the kind has listed.
func (k *involvedKind) synced() bool {
	for _, inf := range k.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return k.informers != nil
}

// newEnricher returns nil when no rule enriches; otherwise it needs a
// metadata client and a resolver that maps kinds. Unresolved kinds are
// looked up again every retry.
func newEnricher(o Options, sh *shared, retry time.Duration, reg prometheus.Registerer) (*enricher, error) {
	var asked []int
	for i, w := range o.Config.Watch {
		if w.Enrich == config.EnrichInvolvedObject {
			asked = append(asked, i)
		}
	}
	if len(asked) == 0 {
		return nil, nil
	}
	if o.Metadata == nil {
		return nil, fmt.Errorf("watch[%d].enrich: involvedObject needs a metadata client, and none was given (exporter.Options.Metadata)", asked[0])
	}
	kinds, ok := o.Resolver.(resource.KindResolver)
	if !ok {
		return nil, fmt.Errorf("watch[%d].enrich: involvedObject needs a resolver that maps kinds to resources (resource.KindResolver)", asked[0])
	}
	en := &enricher{
		client: o.Metadata, kinds: kinds, scope: EnrichScopeOf(o.Config), log: sh.log.Named("enrich"), retry: retry, now: sh.now,
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubefeed_enrich_misses_total",
			Help: "Events sent without data.involvedObject because the involved object was not in the metadata cache (reason: unresolved, not_synced, not_cached).",
		}, []string{"reason"}),
		byKind: map[schema.GroupKind]*involvedKind{},
		done:   make(chan struct{}),
	}
	if err := reg.Register(en.misses); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("enrich metrics: %w", err)
		}
		// A pipeline started again in the same process (a regained Lease)
		// counts on.
		if en.misses, ok = are.ExistingCollector.(*prometheus.CounterVec); !ok {
			return nil, fmt.Errorf("enrich metrics: %w", err)
		}
	}
	for _, reason := range []string{missUnresolved, missNotSynced, missNotCached} {
		en.misses.WithLabelValues(reason)
	}
	return en, nil
}

// involvedRef is what an Event says of the object it is about.
type involvedRef struct{ apiVersion, kind, namespace, name, uid string }

// involvedOf reads involvedObject (core/v1) or regarding
// (events.k8s.io/v1) of an Event. A reference without a namespace is taken
// to be in the Event's namespace, where the API server requires a
// namespaced object to be (it is ignored for cluster-scoped kinds).
func involvedOf(obj map[string]any) (involvedRef, bool) {
	m, _ := obj["involvedObject"].(map[string]any)
	if m == nil {
		m, _ = obj["regarding"].(map[string]any)
	}
	if m == nil {
		return involvedRef{}, false
	}
	s := func(k string) string { v, _ := m[k].(string); return v }
	ref := involvedRef{apiVersion: s("apiVersion"), kind: s("kind"), namespace: s("namespace"), name: s("name"), uid: s("uid")}
	if ref.namespace == "" {
		meta, _ := obj["metadata"].(map[string]any)
		ref.namespace, _ = meta["namespace"].(string)
	}
	return ref, ref.kind != "" && ref.name != ""
}

// Lookup returns the cached metadata of the object the Event obj is about,
// or nil (counted as a miss) when it is not in the cache. An Event without
// a reference has nothing to enrich and is not counted.
func (en *enricher) Lookup(obj map[string]any) *event.InvolvedObject {
	ref, ok := involvedOf(obj)
	if !ok {
		return nil
	}
	k := en.kind(ref)
	if k == nil {
		en.misses.WithLabelValues(missUnresolved).Inc()
		return nil
	}
	key := ref.name
	if k.res.Namespaced {
		key = ref.namespace + "/" + ref.name
	}
	inf := k.informerFor(ref.namespace)
	if inf == nil {
		// A namespace no enriching rule lists: its objects are not cached.
		en.misses.WithLabelValues(missNotCached).Inc()
		return nil
	}
	item, found, err := inf.GetIndexer().GetByKey(key)
	m, _ := item.(*metav1.PartialObjectMetadata)
	if err != nil || !found || m == nil || (ref.uid != "" && string(m.UID) != ref.uid) {
		reason := missNotCached
		if !inf.HasSynced() {
			reason = missNotSynced
		}
		en.misses.WithLabelValues(reason).Inc()
		return nil
	}
	out := &event.InvolvedObject{Labels: m.Labels, Annotations: m.Annotations}
	for _, o := range m.OwnerReferences {
		out.OwnerReferences = append(out.OwnerReferences, event.OwnerReference{
			APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: string(o.UID), Controller: o.Controller, BlockOwnerDeletion: o.BlockOwnerDeletion,
		})
	}
	return out
}

// kind returns the involved kind of ref with its informers, registering and
// starting them the first time the kind is seen; nil while the kind cannot
// be resolved.
func (en *enricher) kind(ref involvedRef) *involvedKind {
	gv, err := schema.ParseGroupVersion(ref.apiVersion)
	if err != nil {
		return nil
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.kind}
	en.mu.RLock()
	k := en.byKind[gk]
	en.mu.RUnlock()
	if k != nil && (k.informers != nil || en.now().Before(k.retryAt)) {
		if k.informers == nil {
			return nil
		}
		return k
	}
	// Resolving may ask discovery: done without the lock, once per kind
	// (and per retry interval for kinds that are not served).
	res, err := en.kinds.ResolveKind(gk)
	en.mu.Lock()
	defer en.mu.Unlock()
	if k := en.byKind[gk]; k != nil && k.informers != nil {
		return k
	}
	if err != nil {
		en.byKind[gk] = &involvedKind{retryAt: en.now().Add(en.retry)}
		en.log.Info("involved kind not resolved; events about it are sent without enrichment", zap.Stringer("kind", gk), zap.Error(err))
		return nil
	}
	nss := en.scope.InformerNamespaces(res.Namespaced)
	k = &involvedKind{res: res, informers: make(map[string]cache.SharedIndexInformer, len(nss))}
	for _, ns := range nss {
		inf := en.newInformer(res, ns)
		k.informers[ns] = inf
		if !en.stopped {
			go inf.Run(en.done)
		}
	}
	en.byKind[gk] = k
	where := zap.Strings("namespaces", nss)
	if len(nss) == 1 && nss[0] == metav1.NamespaceAll {
		where = zap.Bool("allNamespaces", true)
	}
	en.log.Info("watching the metadata of an involved kind", zap.Stringer("kind", gk), zap.String("resource", res.GVR.String()), where)
	return k
}

// newInformer builds a metadata-only informer over res in ns
// (metav1.NamespaceAll: every namespace, or a cluster-scoped kind) that
// keeps just what enrichment reads.
func (en *enricher) newInformer(res resource.Resource, ns string) cache.SharedIndexInformer {
	inf := metadatainformer.NewFilteredMetadataInformer(en.client, res.GVR, ns, 0, cache.Indexers{}, nil).Informer()
	_ = inf.SetTransform(shrinkMetadata)
	log := en.log.With(zap.String("resource", res.GVR.String()), zap.String("namespace", ns))
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, context.Canceled) {
			return
		}
		log.Info("metadata watch ended; the informer lists again (check list/watch permission on the involved kind)", zap.Error(err))
	})
	return inf
}

// shrinkMetadata keeps identity, labels, annotations (without the
// last-applied configuration) and owner references.
func shrinkMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	ann := m.Annotations
	if _, has := ann[lastApplied]; has {
		ann = make(map[string]string, len(m.Annotations)-1)
		for k, v := range m.Annotations {
			if k != lastApplied {
				ann[k] = v
			}
		}
	}
	if len(ann) == 0 {
		ann = nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, Annotations: ann, OwnerReferences: m.OwnerReferences,
	}}, nil
}

// stop ends the informers; kinds met later get none.
func (en *enricher) stop() {
	if en == nil {
		return
	}
	en.mu.Lock()
	defer en.mu.Unlock()
	if !en.stopped {
		en.stopped = true
		close(en.done)
	}
}
