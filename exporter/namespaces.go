package exporter

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// namespaceWatches follows the namespaces that match each distinct
// namespaceSelector (filtered on the API server), and starts and stops the
// scopes of the rules that use it as namespaces gain or lose the labels, or
// are created and deleted. Handlers only signal; one goroutine per selector
// reconciles.
type namespaceWatches struct {
	scopes  scopeTopology
	client  dynamic.Interface
	log     *zap.Logger
	mu      sync.Mutex
	watches map[string]*namespaceWatch // by normalised selector
	wg      sync.WaitGroup
	stopCh  chan struct{}
	running atomic.Bool
}

type namespaceWatch struct {
	selector string
	informer cache.SharedIndexInformer
	rules    []*nsRule
	signal   chan struct{}
	// reconciled is set after the first reconcile following sync.
	reconciled atomic.Bool
}

// nsRule is a rule whose namespaces come from a selector.
type nsRule struct {
	rule    *plan.Rule
	res     resource.Resource
	current map[string][]scopeID // namespace -> the rule's scopes there
}

// scopeTopology is what namespace selection changes: the scopes of rules
// in the namespaces that gain or lose a selector's labels.
type scopeTopology interface {
	joinScopes(r *plan.Rule, res resource.Resource, ids []scopeID, late bool) []*scope
	leaveScopes(r *plan.Rule, ids []scopeID)
	startScope(s *scope)
	// namespacesReconciled runs after a selector's first reconcile.
	namespacesReconciled()
}

func newNamespaceWatches(t scopeTopology, client dynamic.Interface, log *zap.Logger) *namespaceWatches {
	return &namespaceWatches{scopes: t, client: client, log: log, watches: map[string]*namespaceWatch{}, stopCh: make(chan struct{})}
}

// add registers a rule; its scopes appear at the next reconcile.
func (n *namespaceWatches) add(r *plan.Rule, res resource.Resource) error {
	sel, err := parseSelector(r.Config.NamespaceSelector)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	w, ok := n.watches[sel]
	if !ok {
		w = &namespaceWatch{selector: sel, signal: make(chan struct{}, 1)}
		tweak := func(o *metav1.ListOptions) { o.LabelSelector = sel }
		w.informer = dynamicinformer.NewFilteredDynamicInformer(n.client, namespacesGVR, "", 0, cache.Indexers{}, tweak).Informer()
		notify := func(any) {
			select {
			case w.signal <- struct{}{}:
			default:
			}
		}
		_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: notify, DeleteFunc: notify, UpdateFunc: func(_, o any) { notify(o) },
		})
		n.watches[sel] = w
		if n.started() {
			n.run(w)
		}
	}
	nr := &nsRule{rule: r, res: res, current: map[string][]scopeID{}}
	w.rules = append(w.rules, nr)
	if n.started() {
		w.notify()
	}
	return nil
}

func (w *namespaceWatch) notify() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (n *namespaceWatches) started() bool { return n.running.Load() }

// start runs the namespace informers; each one, once synced, creates and
// starts the scopes of the namespaces that match, then follows changes. A
// selector that never syncs (RBAC) holds back only its own rules.
func (n *namespaceWatches) start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.running.Store(true)
	for _, w := range n.watches {
		n.run(w)
	}
}

// run starts one watch (at start, or a rule resolved late).
func (n *namespaceWatches) run(w *namespaceWatch) {
	go w.informer.Run(n.stopCh)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if !cache.WaitForCacheSync(n.stopCh, w.informer.HasSynced) {
			return
		}
		n.reconcile(w)
		w.reconciled.Store(true)
		n.scopes.namespacesReconciled()
		for {
			select {
			case <-n.stopCh:
				return
			case <-w.signal:
				n.reconcile(w)
			}
		}
	}()
}

// unsynced names a selector whose first reconcile has not happened.
func (n *namespaceWatches) unsynced() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sel, w := range n.watches {
		if !w.reconciled.Load() {
			return sel
		}
	}
	return ""
}

// reconciled reports whether every selector reconciled once.
func (n *namespaceWatches) reconciled() bool { return n.unsynced() == "" }

func (n *namespaceWatches) stop() {
	select {
	case <-n.stopCh:
	default:
		close(n.stopCh)
	}
	n.wg.Wait()
}

// reconcile makes every rule of w have scopes in exactly the matching
// namespaces (less its excluded ones).
func (n *namespaceWatches) reconcile(w *namespaceWatch) {
	matching := map[string]bool{}
	for _, key := range w.informer.GetStore().ListKeys() {
		matching[key] = true
	}
	n.mu.Lock()
	rules := append([]*nsRule(nil), w.rules...)
	n.mu.Unlock()
	for _, nr := range rules {
		excluded := map[string]bool{}
		for _, ns := range nr.rule.Config.ExcludeNamespaces {
			excluded[ns] = true
		}
		var added, removed []string
		for ns := range matching {
			if _, ok := nr.current[ns]; !ok && !excluded[ns] {
				added = append(added, ns)
			}
		}
		for ns := range nr.current {
			if !matching[ns] {
				removed = append(removed, ns)
			}
		}
		sort.Strings(added)
		sort.Strings(removed)
		for _, ns := range removed {
			n.scopes.leaveScopes(nr.rule, nr.current[ns])
			delete(nr.current, ns)
			n.log.Info("namespace left the selector; its scopes stopped", zap.String("namespace", ns), zap.String("selector", w.selector), zap.Int("rule", nr.rule.Index))
		}
		for _, ns := range added {
			one := nr.rule.Config
			one.Namespaces, one.ExcludeNamespaces = []string{ns}, nil
			ids, err := scopeIDs(one, nr.res)
			if err != nil {
				n.log.Error("namespace scope", zap.Error(err))
				continue
			}
			created := n.scopes.joinScopes(nr.rule, nr.res, ids, false)
			nr.current[ns] = ids
			for _, s := range created {
				n.scopes.startScope(s)
			}
			n.log.Info("namespace matches the selector; watching it", zap.String("namespace", ns), zap.String("selector", w.selector), zap.Int("rule", nr.rule.Index))
		}
	}
}
