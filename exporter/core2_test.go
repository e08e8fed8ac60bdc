package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// restoredStore is a MemoryStore that says it holds a previous run's state.
type restoredStore struct {
	*MemoryStore
	at time.Time
}

func (s *restoredStore) Restored() (time.Time, bool) { return s.at, true }

func cmScope(ns string) string { return scopeID{GVR: cmRes.GVR, Namespace: ns}.String() }

// After a restart, an object that did not change while kubefeed was down
// emits nothing; its next live change, later, is a live change: not
// recovered, and no gap marker precedes it.
func TestRestoredUnchangedObjectIsLiveLater(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(cmRes.GVR, cm("a", "same", map[string]any{"v": "1"}), true)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Scope = cmScope("")
	st.Put(Key{GVR: cmRes.GVR, Namespace: "a", Name: "same"}, rec)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	h.waitReady()
	// Let the restored keys be compared (they emit nothing), then change.
	deadline := time.Now().Add(10 * time.Second)
	for h.ex.runners[0].pending.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if evs := h.sinks["rec"].got(); len(evs) != 0 {
		t.Fatalf("unchanged restored object emitted:%s", summary(evs))
	}
	src.apply(cmRes.GVR, cm("a", "same", map[string]any{"v": "2"}), false)
	evs := h.sinks["rec"].waitFor(t, "the live change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	if len(evs) != 1 {
		t.Fatalf("got%s, want only the modified event", summary(evs))
	}
	if evs[0].Data.(*event.ChangeData).Recovered {
		t.Error("a live change hours after the restart is marked recovered")
	}
}

// A deletion is rendered by the rule that delivered the object: here rule
// 1 (redacted) delivered the Secret; rule 0 (redact: none, another label)
// covers its namespace but must not render its final state in clear.
func TestDeletionRenderedByDeliveringRule(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{
		{Resource: "secrets", Namespaces: []string{"a"}, LabelSelector: "team=x", Redact: "none"},
		{Resource: "secrets"},
	})
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	s := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"namespace": "a", "name": "pw"}, "data": map[string]any{"password": "c2VjcmV0"}}}
	src.apply(secretRes.GVR, s, false)
	h.sinks["rec"].waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	src.remove(secretRes.GVR, "a", "pw", false)
	evs := h.sinks["rec"].waitFor(t, "deleted", func(e []*event.Event) bool { return len(e) == 2 })
	for _, e := range evs {
		data := e.Data.(*event.ChangeData).Object["data"].(map[string]any)
		if data["password"] == "c2VjcmV0" {
			t.Errorf("%s event carries the secret in clear", e.Type)
		}
	}
}

// A checkpoint's records of a resource not resolved at start (a CRD
// installed later) are kept: a deletion made while kubefeed was down is
// found once the resource appears.
func TestRestoreWaitsForLateResource(t *testing.T) {
	src := newFakeSource(0)
	res := newResolver("widgets.example.com")
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	gone := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"namespace": "a", "name": "w1", "uid": "u-w1", "resourceVersion": "7"}}}
	rec := recordOf(gone)
	rec.Scope = scopeID{GVR: widgetRes.GVR}.String()
	st.Put(Key{GVR: widgetRes.GVR, Namespace: "a", Name: "w1"}, rec)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "widgets.example.com"}, {Resource: "configmaps"}}), harnessOpts{src: src, resolver: res, stores: map[string]Store{"rec": st}})
	res.waitMissed(t, 3) // several resolve attempts
	res.appear("widgets.example.com")
	evs := h.sinks["rec"].waitFor(t, "the deletion of w1", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	if evs[0].Type != event.TypeGap || evs[1].Name != "w1" || !evs[1].Data.(*event.ChangeData).Recovered {
		t.Fatalf("want a restart gap then the recovered deletion of w1, got%s", summary(evs))
	}
}

// An unknown scope's records are forgotten once every rule resolved: the
// objects left the configured scopes, which is not a deletion.
func TestRestoreForgetsScopesNoLongerConfigured(t *testing.T) {
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	st.Put(Key{GVR: deployRes.GVR, Namespace: "a", Name: "d"}, Record{UID: "u", ResourceVersion: "1", Scope: scopeID{GVR: deployRes.GVR}.String()})
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{stores: map[string]Store{"rec": st}})
	h.waitReady()
	if _, ok := st.Get(Key{GVR: deployRes.GVR, Namespace: "a", Name: "d"}); ok {
		t.Error("a record of a scope no longer configured was kept")
	}
	if evs := h.sinks["rec"].got(); len(evs) != 0 {
		t.Errorf("leaving the scope emitted:%s", summary(evs))
	}
}

// A scope the API server never lets list (RBAC) holds back only itself:
// the other scope delivers, and readiness names the stuck one.
func TestUnsyncedScopeHoldsBackOnlyItself(t *testing.T) {
	src := newFakeSource(0)
	src.listErr[secretRes.GVR] = apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "", errors.New("RBAC"))
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}, {Resource: "configmaps"}}), harnessOpts{src: src})
	deadline := time.Now().Add(10 * time.Second)
	for (h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}] == nil || !h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].ready.Load()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	h.sinks["rec"].waitFor(t, "the configmap", func(e []*event.Event) bool { return len(e) == 1 })
	ok, why := h.ex.Healthy()
	if ok || why != "scope secrets not synced" {
		t.Errorf("Healthy = %v %q, want not ready naming the secrets scope", ok, why)
	}
}

// Gap markers carry the scope's apiVersion and kind, so NATS subjects put
// them under the resource's group (apps), not "core".
func TestGapMarkerCarriesAPIVersion(t *testing.T) {
	src := newFakeSource(0)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "deployments.apps"}}), harnessOpts{src: src})
	h.waitReady()
	d := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"namespace": "a", "name": "web"}}}
	src.apply(deployRes.GVR, d, true)
	src.expire(deployRes.GVR)
	evs := h.sinks["rec"].waitFor(t, "gap and added", func(e []*event.Event) bool { return len(e) == 2 })
	g := evs[0]
	if g.Type != event.TypeGap || g.APIVersion != "apps/v1" || g.Kind != "Deployment" {
		t.Fatalf("gap marker apiversion %q kind %q type %s, want apps/v1 Deployment gap", g.APIVersion, g.Kind, g.Type)
	}
}

// A resync emits nothing for objects the sink has.
func TestResyncEmitsNothing(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.ResyncPeriod.Duration = 20 * time.Millisecond
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	h.sinks["rec"].waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	time.Sleep(200 * time.Millisecond) // about ten resyncs
	if evs := h.sinks["rec"].got(); len(evs) != 1 {
		t.Fatalf("resyncs emitted:%s", summary(evs))
	}
}

// Run closes its sinks and stops its informers on every way out, also
// when it ends before anything synced.
func TestRunClosesSinksWhenStoppedEarly(t *testing.T) {
	src := newFakeSource(0)
	src.listErr[cmRes.GVR] = errors.New("connection refused")
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	time.Sleep(50 * time.Millisecond)
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !h.sinks["rec"].closed {
		t.Error("sink not closed")
	}
	for _, s := range h.ex.scopeSet() {
		select {
		case <-s.stop:
		default:
			t.Errorf("scope %s still running", s.name)
		}
	}
}

// Closing AbortSends (the Lease was lost) cancels a send in flight at
// once instead of draining.
func TestAbortSendsCancelsInflight(t *testing.T) {
	src := newFakeSource(0)
	abort := make(chan struct{})
	started := make(chan struct{})
	blocking := &blockingSink{started: started}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, abort: abort, sink: blocking})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	<-started
	close(abort)
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still draining after the abort")
	}
	if !errors.Is(blocking.err, context.Canceled) {
		t.Errorf("send ended with %v, want canceled", blocking.err)
	}
}

type blockingSink struct {
	started chan struct{}
	once    sync.Once
	err     error
}

func (b *blockingSink) Send(ctx context.Context, _ []*event.Event) error {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	b.err = ctx.Err()
	return ctx.Err()
}
func (b *blockingSink) Close(context.Context) error { return nil }

// RetryAfter(0) (a receiver's "Retry-After: 0") still backs off.
func TestRetryAfterZeroBacksOff(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	r0 := &recorder{fail: func(int, []*event.Event) error { return sinks.RetryAfter(errors.New("busy"), 0) }}
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"rec": r0}, clientFor: newFakeSource(0).client})
	if err != nil {
		t.Fatal(err)
	}
	ex.joinScopes(ex.rules[0], cmRes, []scopeID{{GVR: cmRes.GVR}}, false)
	s := ex.scopes[scopeID{GVR: cmRes.GVR}]
	u := cm("a", "x", nil)
	u.SetUID("u")
	u.SetResourceVersion("1")
	_ = s.informer.GetIndexer().Add(u)
	r := ex.runners[0]
	s.ready.Store(true)
	r.enqueue(keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}), nil)
	r.processNext(context.Background(), nil)
	if n := r.queue.NumRequeues(keyItem(Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})); n != 1 {
		t.Fatalf("requeues = %d: a zero Retry-After did not go through the backoff", n)
	}
	r.queue.ShutDown()
}

// During an outage with churn (objects created and deleted under new
// names), the per-key state drains to nothing once the sink recovers.
func TestPendingStateDrainsAfterOutage(t *testing.T) {
	src := newFakeSource(0)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src})
	var mu sync.Mutex
	down := true
	h.sinks["rec"].fail = func(int, []*event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("sink down")
		}
		return nil
	}
	h.waitReady()
	for i := 0; i < 200; i++ {
		src.apply(cmRes.GVR, cm("a", fmt.Sprintf("churn-%d", i), nil), false)
		if i%2 == 0 {
			src.remove(cmRes.GVR, "a", fmt.Sprintf("churn-%d", i), false)
		}
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	h.sinks["rec"].waitFor(t, "100 surviving objects", func(e []*event.Event) bool {
		alive := map[string]bool{}
		for _, ev := range e {
			switch ev.Type {
			case event.Added.Type():
				alive[ev.Name] = true
			case event.Deleted.Type():
				delete(alive, ev.Name)
			}
		}
		return len(alive) == 100
	})
	r := h.ex.runners[0]
	deadline := time.Now().Add(40 * time.Second)
	for (r.pending.len() > 0 || r.queue.Len() > 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := r.pending.len(); n != 0 {
		t.Errorf("%d per-key records left after the backlog drained", n)
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
