package exporter

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	ex      *Exporter
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
}

// nsRule is a rule whose namespaces come from a selector.
type nsRule struct {
	rule    *rule
	res     Resource
	current map[string][]scopeID // namespace -> the rule's scopes there
}

func newNamespaceWatches(ex *Exporter) *namespaceWatches {
	return &namespaceWatches{ex: ex, watches: map[string]*namespaceWatch{}, stopCh: make(chan struct{})}
}

// add registers a rule; its scopes appear at the next reconcile.
func (n *namespaceWatches) add(r *rule, res Resource) error {
	sel, err := parseSelector(r.cfg.NamespaceSelector)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	w, ok := n.watches[sel]
	if !ok {
		w = &namespaceWatch{selector: sel, signal: make(chan struct{}, 1)}
		tweak := func(o *metav1.ListOptions) { o.LabelSelector = sel }
		w.informer = dynamicinformer.NewFilteredDynamicInformer(n.ex.client, namespacesGVR, "", 0, cache.Indexers{}, tweak).Informer()
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

// start runs the namespace informers, waits for them, and creates the
// scopes of the namespaces that match now (not started: Run starts them
// with the others). It returns false when ctx ended first.
func (n *namespaceWatches) start(ctx context.Context) bool {
	n.mu.Lock()
	n.running.Store(true)
	ws := make([]*namespaceWatch, 0, len(n.watches))
	for _, w := range n.watches {
		ws = append(ws, w)
		go w.informer.Run(n.stopCh)
	}
	n.mu.Unlock()
	for _, w := range ws {
		if !cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			return false
		}
		n.reconcile(w, false)
	}
	n.mu.Lock()
	for _, w := range ws {
		n.loop(w)
	}
	n.mu.Unlock()
	return true
}

// run starts a watch added after start (a rule resolved late).
func (n *namespaceWatches) run(w *namespaceWatch) {
	go w.informer.Run(n.stopCh)
	n.loop(w)
}

func (n *namespaceWatches) loop(w *namespaceWatch) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.stopCh:
				return
			case <-w.signal:
				if w.informer.HasSynced() {
					n.reconcile(w, true)
				}
			}
		}
	}()
}

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
func (n *namespaceWatches) reconcile(w *namespaceWatch, start bool) {
	matching := map[string]bool{}
	for _, key := range w.informer.GetStore().ListKeys() {
		matching[key] = true
	}
	n.mu.Lock()
	rules := append([]*nsRule(nil), w.rules...)
	n.mu.Unlock()
	for _, nr := range rules {
		excluded := map[string]bool{}
		for _, ns := range nr.rule.cfg.ExcludeNamespaces {
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
			n.ex.leaveScopes(nr.rule, nr.current[ns])
			delete(nr.current, ns)
			n.ex.log.Info("namespace left the selector; its scopes stopped", zap.String("namespace", ns), zap.String("selector", w.selector), zap.Int("rule", nr.rule.index))
		}
		for _, ns := range added {
			one := nr.rule.cfg
			one.Namespaces, one.ExcludeNamespaces = []string{ns}, nil
			ids, err := scopeIDs(one, nr.res)
			if err != nil {
				n.ex.log.Error("namespace scope", zap.Error(err))
				continue
			}
			created := n.ex.joinScopes(nr.rule, nr.res, ids)
			nr.current[ns] = ids
			if start {
				for _, s := range created {
					if err := s.start(); err != nil {
						n.ex.log.Error("start informer", zap.Error(err))
					}
				}
			}
			n.ex.log.Info("namespace matches the selector; watching it", zap.String("namespace", ns), zap.String("selector", w.selector), zap.Int("rule", nr.rule.index))
		}
	}
}
