package exporter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/internal/fixture"
	"github.com/kubefeed/kubefeed/sinks"
)

// fakeSource is an API server for one process without one: objects by
// resource, paged lists (Limit/Continue, as the reflector's pager sends
// them), watches fed by the test, and failures on demand.
type fakeSource struct {
	mu       sync.Mutex
	rv       int
	pageSize int // 0: the client's Limit only
	objs     map[schema.GroupVersionResource]map[string]*unstructured.Unstructured
	watchers map[schema.GroupVersionResource][]*fakeWatch
	// listErr, when set for a resource, fails every List of it.
	listErr map[schema.GroupVersionResource]error
	// listCalls counts List calls per resource (pages included).
	listCalls map[schema.GroupVersionResource]int
	// noWatchList makes the source refuse watches with sendInitialEvents,
	// as an API server without the WatchList feature (or its watch cache)
	// does, so that the reflector lists in pages instead.
	noWatchList bool
	// streams counts watch-list requests per resource.
	streams map[schema.GroupVersionResource]int
	// breakStreams, when positive, ends that many of the next watch-list
	// streams after half their objects, without the end bookmark.
	breakStreams int
	// shardSelectors records the shardSelector of every list and watch;
	// honoursShards makes the source apply it (ShardedListAndWatch on),
	// for the spans it names.
	shardSelectors []string
	honoursShards  []*shard.Span
}

// spanOf is the honoured span whose selector sel is, or nil (ignored).
func (f *fakeSource) spanOf(sel string) *shard.Span {
	if sel != "" {
		f.shardSelectors = append(f.shardSelectors, sel)
	}
	for _, sp := range f.honoursShards {
		if sp.Selector() == sel {
			return sp
		}
	}
	return nil
}

// fakeWatch is a watch the fake source feeds; its buffer holds more than
// any test sends.
type fakeWatch struct {
	mu      sync.Mutex
	ch      chan watch.Event
	stopped bool
	ns      string
	sel     labels.Selector
	span    *shard.Span // applied by the source, or nil
}

// admits reports whether the watch's selectors take u.
func (w *fakeWatch) admits(u *unstructured.Unstructured) bool {
	return (w.ns == "" || w.ns == u.GetNamespace()) && w.sel.Matches(labels.Set(u.GetLabels())) && (w.span == nil || w.span.Has(string(u.GetUID())))
}

func (w *fakeWatch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.ch)
	}
}

func (w *fakeWatch) ResultChan() <-chan watch.Event { return w.ch }

func (w *fakeWatch) send(ev watch.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	select {
	case w.ch <- ev:
	default:
		panic("fakeWatch: buffer full")
	}
}

func newFakeSource(pageSize int) *fakeSource {
	return &fakeSource{pageSize: pageSize, objs: map[schema.GroupVersionResource]map[string]*unstructured.Unstructured{},
		watchers: map[schema.GroupVersionResource][]*fakeWatch{}, listErr: map[schema.GroupVersionResource]error{},
		listCalls: map[schema.GroupVersionResource]int{}, streams: map[schema.GroupVersionResource]int{}}
}

func (f *fakeSource) client(gvr schema.GroupVersionResource, ns string) resourceClient {
	return &fakeClient{f: f, gvr: gvr, ns: ns}
}

type fakeClient struct {
	f   *fakeSource
	gvr schema.GroupVersionResource
	ns  string
}

func objKey(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

func (c *fakeClient) List(_ context.Context, o metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listCalls[c.gvr]++
	if err := f.listErr[c.gvr]; err != nil {
		return nil, err
	}
	sel, err := labels.Parse(o.LabelSelector)
	if err != nil {
		return nil, err
	}
	span := f.spanOf(o.ShardSelector)
	var keys []string
	for k, u := range f.objs[c.gvr] {
		if (c.ns == "" || u.GetNamespace() == c.ns) && sel.Matches(labels.Set(u.GetLabels())) && (span == nil || span.Has(string(u.GetUID()))) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	start := 0
	if o.Continue != "" {
		start, _ = strconv.Atoi(o.Continue)
	}
	limit := int(o.Limit)
	if f.pageSize > 0 && (limit == 0 || f.pageSize < limit) {
		limit = f.pageSize
	}
	end := len(keys)
	if limit > 0 && start+limit < end {
		end = start + limit
	}
	l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List"}}
	l.SetResourceVersion(strconv.Itoa(f.rv))
	if end < len(keys) {
		l.SetContinue(strconv.Itoa(end))
	}
	for _, k := range keys[start:end] {
		l.Items = append(l.Items, *f.objs[c.gvr][k].DeepCopy())
	}
	return l, nil
}

func (c *fakeClient) Watch(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
	sel, err := labels.Parse(o.LabelSelector)
	if err != nil {
		return nil, err
	}
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	stream := o.SendInitialEvents != nil && *o.SendInitialEvents
	if stream {
		if f.noWatchList {
			return nil, apierrors.NewBadRequest("sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
		}
		if err := f.listErr[c.gvr]; err != nil {
			return nil, err
		}
		f.streams[c.gvr]++
	}
	w := &fakeWatch{ch: make(chan watch.Event, 1<<17), ns: c.ns, sel: sel, span: f.spanOf(o.ShardSelector)}
	if stream {
		// The initial events: every object as ADDED, then the bookmark
		// that ends them.
		var keys []string
		for k, u := range f.objs[c.gvr] {
			if w.admits(u) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if f.breakStreams > 0 {
			f.breakStreams--
			for _, k := range keys[:len(keys)/2] {
				w.send(watch.Event{Type: watch.Added, Object: f.objs[c.gvr][k].DeepCopy()})
			}
			w.Stop()
			return w, nil
		}
		for _, k := range keys {
			w.send(watch.Event{Type: watch.Added, Object: f.objs[c.gvr][k].DeepCopy()})
		}
		bm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Bookmark"}}
		bm.SetResourceVersion(strconv.Itoa(f.rv))
		bm.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		w.send(watch.Event{Type: watch.Bookmark, Object: bm})
	}
	f.watchers[c.gvr] = append(f.watchers[c.gvr], w)
	return w, nil
}

// apply stores u with a new resourceVersion and, unless quiet, tells the
// watches (quiet: a change made while no watch was open).
func (f *fakeSource) apply(gvr schema.GroupVersionResource, u *unstructured.Unstructured, quiet bool) *unstructured.Unstructured {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	u = u.DeepCopy()
	u.SetResourceVersion(strconv.Itoa(f.rv))
	if u.GetUID() == "" {
		u.SetUID(types.UID("uid-" + objKey(u)))
	}
	if f.objs[gvr] == nil {
		f.objs[gvr] = map[string]*unstructured.Unstructured{}
	}
	_, existed := f.objs[gvr][objKey(u)]
	f.objs[gvr][objKey(u)] = u
	if !quiet {
		typ := watch.Added
		if existed {
			typ = watch.Modified
		}
		f.send(gvr, watch.Event{Type: typ, Object: u.DeepCopy()}, u)
	}
	return u
}

func (f *fakeSource) remove(gvr schema.GroupVersionResource, ns, name string, quiet bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := name
	if ns != "" {
		k = ns + "/" + name
	}
	u, ok := f.objs[gvr][k]
	if !ok {
		return
	}
	delete(f.objs[gvr], k)
	f.rv++
	if !quiet {
		d := u.DeepCopy()
		d.SetResourceVersion(strconv.Itoa(f.rv))
		f.send(gvr, watch.Event{Type: watch.Deleted, Object: d}, u) // d belongs to the watch now (transforms change it)
	}
}

func (f *fakeSource) send(gvr schema.GroupVersionResource, ev watch.Event, u *unstructured.Unstructured) {
	for _, w := range f.watchers[gvr] {
		if w.admits(u) {
			// Each watch gets its own copy: the informer's transform
			// mutates what it receives, as a decoder's fresh object may be.
			w.send(watch.Event{Type: ev.Type, Object: ev.Object.DeepCopyObject()})
		}
	}
}

// expire ends every watch of gvr with 410 Gone, so the reflector relists.
func (f *fakeSource) expire(gvr schema.GroupVersionResource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := apierrors.NewResourceExpired("too old resource version").Status()
	for _, w := range f.watchers[gvr] {
		w.send(watch.Event{Type: watch.Error, Object: &st})
		w.Stop()
	}
	f.watchers[gvr] = nil
}

// fakeResolver resolves a fixed set; names in missing fail until removed.
type fakeResolver struct {
	mu      sync.Mutex
	calls   int
	known   map[string]resource.Resource
	missing map[string]bool
}

func (r *fakeResolver) Resolve(name string) (resource.Resource, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.missing[name] {
		return resource.Resource{}, fmt.Errorf("resource %q not found", name)
	}
	res, ok := r.known[name]
	if !ok {
		return resource.Resource{}, fmt.Errorf("resource %q not found", name)
	}
	return res, nil
}
func (r *fakeResolver) Reset() {}

// waitMissed waits until the exporter looked name up at least n times.
func (r *fakeResolver) waitMissed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		c := r.calls
		r.mu.Unlock()
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("resolver called %d times, want %d", c, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *fakeResolver) appear(name string) {
	r.mu.Lock()
	delete(r.missing, name)
	r.mu.Unlock()
}

var (
	cmRes     = fixture.ConfigMaps
	secretRes = fixture.Secrets
	deployRes = fixture.Deployments
	widgetRes = fixture.Widgets
)

func newResolver(missing ...string) *fakeResolver {
	r := &fakeResolver{known: map[string]resource.Resource{"configmaps": cmRes, "secrets": secretRes, "deployments.apps": deployRes, "widgets.example.com": widgetRes}, missing: map[string]bool{}}
	for _, m := range missing {
		r.missing[m] = true
	}
	return r
}

// recorder is a sink that records what it acknowledged; fail, when set,
// decides per call whether to fail it.
type recorder struct {
	mu     sync.Mutex
	events []*event.Event
	calls  int
	fail   func(call int, evs []*event.Event) error
	closed bool
	// late counts sends after Close, which fail (retryably, as a real
	// sink's): the exporter sends nothing once it closed its sinks.
	late int
}

func (r *recorder) Send(ctx context.Context, evs []*event.Event) error {
	r.mu.Lock()
	if r.closed {
		r.late++
		r.mu.Unlock()
		return errors.New("recorder: closed")
	}
	r.calls++
	call, fail := r.calls, r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(call, evs); err != nil {
			return err
		}
	}
	for _, e := range evs {
		if _, err := event.Marshal(e); err != nil {
			return sinks.Permanent(err)
		}
	}
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
	return nil
}

// setFail sets fail while sends may run.
func (r *recorder) setFail(f func(call int, evs []*event.Event) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) Close(context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func (r *recorder) got() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*event.Event(nil), r.events...)
}

// waitFor polls until cond holds on the recorded events, or fails the test
// after a generous deadline (a liveness bound, not a timing assertion).
func (r *recorder) waitFor(t *testing.T, what string, cond func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := r.got()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got %d events: %s", what, len(evs), summary(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func summary(evs []*event.Event) string { return fixture.Summary(evs) }

// count returns the events of one change kind (added, modified, deleted,
// gap).
func count(evs []*event.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// harness runs an Exporter over a fakeSource.
type harness struct {
	t      *testing.T
	src    *fakeSource
	ex     *Exporter
	sinks  map[string]*recorder
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
}

type harnessOpts struct {
	pageSize int
	resolver *fakeResolver
	stores   map[string]state.Store
	src      *fakeSource
	sends    context.Context // SendContext
	sink     sinks.Sink      // replaces the recorder of the sink "rec"
	metadata metadata.Interface
}

func newConfig(watch []config.Watch, sinkNames ...string) *config.Config {
	cfg := fixture.Config(watch, sinkNames...)
	cfg.ShutdownTimeout.Duration = 5 * time.Second
	return cfg
}

func startHarness(t *testing.T, cfg *config.Config, o harnessOpts) *harness {
	t.Helper()
	src := o.src
	if src == nil {
		src = newFakeSource(o.pageSize)
	}
	res := o.resolver
	if res == nil {
		res = newResolver()
	}
	h := &harness{t: t, src: src, sinks: map[string]*recorder{}, done: make(chan struct{})}
	ss := map[string]sinks.Sink{}
	for _, sc := range cfg.Sinks {
		r := &recorder{}
		h.sinks[sc.Name] = r
		ss[sc.Name] = r
		if sc.Name == "rec" && o.sink != nil {
			ss[sc.Name] = o.sink
		}
	}
	return h.run(t, Options{Config: cfg, Resolver: res, Sinks: ss, Stores: o.stores, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		ResolveRetry: 20 * time.Millisecond, SendContext: o.sends, Metadata: o.metadata, clientFor: src.client})
}

// run builds the exporter of o and runs it until the test ends.
func (h *harness) run(t *testing.T, o Options) *harness {
	t.Helper()
	ex, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.ex = ex
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.err = ex.Run(ctx); close(h.done) }()
	t.Cleanup(func() {
		h.stop()
		for name, r := range h.sinks {
			r.mu.Lock()
			late := r.late
			r.mu.Unlock()
			if late > 0 {
				t.Errorf("sink %s: %d sends after it was closed", name, late)
			}
		}
	})
	return h
}

// stop ends Run and returns its error (once).
func (h *harness) stop() error {
	h.cancel()
	select {
	case <-h.done:
		return h.err
	case <-time.After(30 * time.Second):
		h.t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func (h *harness) waitReady() {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !h.ex.Ready() {
		if time.Now().After(deadline) {
			_, why := h.ex.Healthy()
			h.t.Fatalf("exporter not ready: %s", why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func cm(ns, name string, data map[string]any) *unstructured.Unstructured {
	return fixture.ConfigMap(ns, name, data)
}

// restoredStore is a MemoryStore that says it holds a previous run's state.
type restoredStore struct {
	*state.MemoryStore
	at time.Time
}

func (s *restoredStore) Restored() (time.Time, bool) { return s.at, true }

func cmScope(ns string) string { return scopeID{GVR: cmRes.GVR, Namespace: ns}.String() }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// quiesce waits until the sink has no key waiting or in flight, then
// returns what it got.
func quiesce(t *testing.T, h *harness, sink string) []*event.Event {
	t.Helper()
	r := h.ex.runners[0]
	waitUntil(t, "no key pending", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	return h.sinks[sink].got()
}

// recordOf is the delivered-state record of obj.
func recordOf(obj *unstructured.Unstructured) state.Record {
	return plan.RecordFrom(obj, plan.MetaOf(obj))
}
