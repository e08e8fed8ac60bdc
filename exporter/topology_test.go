package exporter

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// Handlers and workers read routing while namespace-selector churn adds
// and removes rules (run with -race).
func TestRoutingSnapshotUnderChurn(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}, {Resource: "configmaps", LabelSelector: "x=y"}})
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"rec": &recorder{}}, clientFor: newFakeSource(0).client})
	if err != nil {
		t.Fatal(err)
	}
	id := scopeID{GVR: cmRes.GVR, Namespace: "a"}
	ex.joinScopes(ex.rules[0], cmRes, []scopeID{id}, false)
	s := ex.scopes[id]
	r := ex.runners[0]
	u := cm("a", "x", nil)
	u.SetUID("u")
	u.SetResourceVersion("1")
	_ = s.informer.GetIndexer().Add(u)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			ex.joinScopes(ex.rules[1], cmRes, []scopeID{id}, false)
			ex.leaveScopes(ex.rules[1], []scopeID{id})
		}
		close(stop)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.onAdd(u, false)
			_ = r.lookup(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
		}
	}()
	wg.Wait()
	if got := len(s.table().rules); got != 1 {
		t.Errorf("rules after churn = %d, want 1", got)
	}
	r.queue.ShutDown()
}

// Rules join and leave a running scope as a namespace selector's reconcile
// makes them (joinScopes, leaveScopes) while workers of two sinks deliver
// its objects: scope tables in config order (lookup hands out the table's
// own slice), out of it, with rules of the other sink only, merged with
// another scope's rules (rule 4's, for the other sink). Under -race a write into any table's rules a
// worker reads is reported; besides, every table observed keeps its rules
// (up to their capacity) to the end, and the last version of every object
// reaches the sink.
func TestScopeTablesNeverWrittenUnderChurn(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{
		{Resource: "configmaps", Namespaces: []string{"a"}, Sinks: []string{"rec"}},
		{Resource: "configmaps", Namespaces: []string{"b"}, Sinks: []string{"rec"}},
		{Resource: "configmaps", Namespaces: []string{"c"}, Sinks: []string{"rec", "other"}},
		{Resource: "configmaps", Namespaces: []string{"d"}, Sinks: []string{"other"}},
		{Resource: "configmaps", Sinks: []string{"other"}, LabelSelector: "tier"}, // another scope over a: a merge
	}, "rec", "other")
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	ex := h.ex
	ids := func(r *plan.Rule) []scopeID {
		one := r.Config
		one.Namespaces = []string{"a"}
		x, err := scopeIDs(one, cmRes)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	aIDs := ids(ex.rules[0])
	ex.mu.Lock()
	sa := ex.scopes[aIDs[0]]
	ex.mu.Unlock()
	if sa == nil {
		t.Fatal("no scope for namespace a")
	}

	// Every table the scope publishes, as first seen.
	var seenMu sync.Mutex
	seen := map[*scopeTable][]*plan.Rule{}
	observe := func() {
		tb := sa.table()
		seenMu.Lock()
		if _, ok := seen[tb]; !ok {
			seen[tb] = fullCopy(tb.rules)
		}
		seenMu.Unlock()
	}

	const objects, rounds = 12, 300
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // the namespace selector's reconcile
		defer wg.Done()
		rng := rand.New(rand.NewPCG(8, 1))
		joined := map[*plan.Rule]bool{}
		for i := 0; i < rounds; i++ {
			// As reconcile: a rule joins a namespace it is not in, and
			// leaves one it is in.
			r := ex.rules[1+rng.IntN(3)]
			if !joined[r] {
				ex.joinScopes(r, cmRes, ids(r), false)
			} else {
				ex.leaveScopes(r, ids(r))
			}
			joined[r] = !joined[r]
			observe()
		}
		stop.Store(true)
	}()
	go func() { // the workers' readers besides: tables as lookups see them
		defer wg.Done()
		for !stop.Load() {
			observe()
			for _, r := range ex.runners {
				for i := 0; i < objects; i++ {
					name := "o" + strconv.Itoa(i)
					c := r.lookup(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: name})
					final := c.Obj
					if final == nil {
						final = cm("a", name, nil) // DeletionRules gets the final state
					}
					_ = plan.DeletionRules(c.Rules, 1, final)
				}
			}
		}
	}()
	go func() { // changes, deletions and re-creations
		defer wg.Done()
		rng := rand.New(rand.NewPCG(8, 2))
		for v := 0; !stop.Load(); v++ {
			i := rng.IntN(objects)
			name := "o" + strconv.Itoa(i)
			if rng.IntN(8) == 0 {
				src.remove(cmRes.GVR, "a", name, false)
				continue
			}
			u := cm("a", name, map[string]any{"v": strconv.Itoa(v)})
			if rng.IntN(2) == 0 {
				u.SetLabels(map[string]string{"tier": "x"})
			}
			src.apply(cmRes.GVR, u, false)
		}
	}()
	wg.Wait()

	// Rule 0 alone again; the last version of every object reaches rec.
	for _, r := range ex.rules[1:4] {
		ex.leaveScopes(r, ids(r))
	}
	for i := 0; i < objects; i++ {
		src.apply(cmRes.GVR, cm("a", "o"+strconv.Itoa(i), map[string]any{"v": "final"}), false)
	}
	h.sinks["rec"].waitFor(t, "the final versions", func(evs []*event.Event) bool {
		last := map[string]string{}
		for _, e := range evs {
			if e.Type == event.TypeGap {
				continue
			}
			if e.Namespace == "a" {
				last[e.Name] = fmt.Sprint(e.Data.(*event.ChangeData).Object["data"])
			}
		}
		for i := 0; i < objects; i++ {
			if last["o"+strconv.Itoa(i)] != "map[v:final]" {
				return false
			}
		}
		return true
	})
	for _, r := range ex.runners {
		waitUntil(t, "sink "+r.name+" settled", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	}
	observe()
	seenMu.Lock()
	defer seenMu.Unlock()
	whole, unordered := 0, 0
	for tb, was := range seen {
		if now := fullCopy(tb.rules); !sameRules(now, was) {
			t.Errorf("a published table's rules were written: %s, was %s", ruleList(now), ruleList(was))
		}
		if len(tb.rules) > 1 && allRouteInOrder(tb.rules, "rec") {
			whole++ // handed out as it is to rec
		}
		for i := 1; i < len(tb.rules); i++ {
			if tb.rules[i-1].Index > tb.rules[i].Index {
				unordered++ // sorted into a new slice
				break
			}
		}
	}
	if len(seen) < 10 || whole == 0 || unordered == 0 {
		t.Fatalf("the churn did not exercise the paths: %d tables, %d handed out whole, %d out of config order", len(seen), whole, unordered)
	}
}

// A resource that appears after start (a CRD installed later): its objects
// were created while kubefeed ran, so its first list is sent as added even
// with initialList: skip.
func TestLateResourceSendsItsFirstList(t *testing.T) {
	src := newFakeSource(0)
	res := newResolver("widgets.example.com")
	h := startHarness(t, newConfig([]config.Watch{{Resource: "widgets.example.com"}}), harnessOpts{src: src, resolver: res})
	w := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": map[string]any{"namespace": "a", "name": "w1"}}}
	src.apply(widgetRes.GVR, w, true) // created before kubefeed resolved the resource
	res.waitMissed(t, 2)
	res.appear("widgets.example.com")
	evs := h.sinks["rec"].waitFor(t, "w1 added", func(e []*event.Event) bool { return len(e) == 1 })
	if evs[0].Type != event.Added.Type() || evs[0].Name != "w1" {
		t.Fatalf("got%s, want w1 added", summary(evs))
	}
}
