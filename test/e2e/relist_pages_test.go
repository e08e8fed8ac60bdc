package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// listCall is one List request kubefeed made and what it got back.
type listCall struct {
	continued bool // the request carried a continue token
	more      bool // the response had one
	items     int
}

// pagingProbe is the dynamic client kubefeed uses, recording its Lists.
// With noWatchList it refuses watches with sendInitialEvents, as an API
// server without the WatchList feature does, so that the reflector lists
// in pages.
type pagingProbe struct {
	dynamic.Interface
	noWatchList bool
	mu          sync.Mutex
	calls       []listCall
}

func (p *pagingProbe) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return probeResource{p.Interface.Resource(gvr), p}
}

func (p *pagingProbe) since(n int) []listCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]listCall(nil), p.calls[n:]...)
}

type probeResource struct {
	dynamic.NamespaceableResourceInterface
	p *pagingProbe
}

func (r probeResource) Namespace(ns string) dynamic.ResourceInterface {
	return probeList{r.NamespaceableResourceInterface.Namespace(ns), r.p}
}

type probeList struct {
	dynamic.ResourceInterface
	p *pagingProbe
}

func (r probeList) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	l, err := r.ResourceInterface.List(ctx, opts)
	if err == nil {
		r.p.mu.Lock()
		r.p.calls = append(r.p.calls, listCall{continued: opts.Continue != "", more: l.GetContinue() != "", items: len(l.Items)})
		r.p.mu.Unlock()
	}
	return l, err
}

func (r probeList) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if r.p.noWatchList && opts.SendInitialEvents != nil && *opts.SendInitialEvents {
		return nil, apierrors.NewBadRequest("sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
	}
	return r.ResourceInterface.Watch(ctx, opts)
}

// pages counts the continued requests and the items of calls.
func pages(calls []listCall) (continued, items int) {
	for _, c := range calls {
		if c.continued {
			continued++
		}
		items += c.items
	}
	return continued, items
}

// 1,200 ConfigMaps in one namespace, an API server without watch cache so
// that lists come from etcd in pages of 500, and a client that is refused
// watch-list streaming (as by an API server without it), so that it lists: the initial list (3 pages) is
// no relist (no gap, nothing recovered). Then the API server kubefeed uses
// is killed; through a second one, objects on all three pages are changed,
// deleted and created, and etcd is compacted; the first comes back, the
// watch gets 410 and the reflector relists in pages. Exactly one gap
// marker, then exactly the changes of every page, recovered; the 1,194
// unchanged objects emit nothing.
func TestPagedRelistRecoversChangesOnEveryPage(t *testing.T) {
	own := cluster.StartT(t, cluster.Options{DisableWatchCache: true})
	second, err := own.AddAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "pages"
	if _, err := own.APIServer().Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(own.Config())
	cms := dyn.Resource(configMaps).Namespace(ns)
	g := errgroup.Group{}
	g.SetLimit(16)
	for i := 0; i < 1200; i++ {
		g.Go(func() error {
			_, err := cms.Create(ctx, cm(fmt.Sprintf("c%04d", i), nil, map[string]any{"v": "0"}), metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	srv := natstest.StartT(t, natstest.Options{})
	js := jetStreamSink(t, srv.URL(), nil)
	cfg, err := config.Parse("t.yaml", []byte("apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nwatch:\n"+
		"  - {resource: configmaps, namespaces: [pages], initialList: skip}\n"+
		"sinks:\n  - {name: js, jetstream: {servers: [nats://unused:4222], stream: KUBEFEED}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	probe := &pagingProbe{Interface: dyn, noWatchList: true}
	ex, err := exporter.New(exporter.Options{
		Config: cfg, Client: probe, Resolver: resource.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(own.Config())),
		Sinks: map[string]sinks.Sink{"js": js}, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ex.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(90 * time.Second)
	for !ex.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("exporter not ready after 90s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	initial := probe.since(0)
	if cont, items := pages(initial); cont < 2 || items != 1200 {
		t.Fatalf("initial list: %d continued pages, %d items in %d calls; want at least 2 continued pages and 1200 items (is the API server paginating?)", cont, items, len(initial))
	}
	read := func() []got {
		var out []got
		for _, l := range streamLines(t, srv.URL()) {
			var e got
			if err := jsonUnmarshal(l, &e); err != nil {
				t.Fatal(err)
			}
			e.raw = l
			out = append(out, e)
		}
		return out
	}
	waitN := func(n int) []got {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			evs := read()
			if len(evs) >= n {
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream holds %d events, want %d:\n%s", len(evs), n, summary(evs))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// A live change: it is the first event; the paged initial list sent
	// nothing (no gap marker, nothing recovered).
	if _, err := cms.Patch(ctx, "c0000", types.MergePatchType, []byte(`{"data":{"v":"live"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := waitN(1)
	if e := evs[0]; e.change() != "modified" || e.Name != "c0000" || e.Data.Recovered {
		t.Fatalf("first event after a paged initial list: %s %s recovered=%v, want the live modification of c0000:\n%s", e.change(), e.Name, e.Data.Recovered, summary(evs))
	}
	if n := ex.Relists(); n != 0 {
		t.Errorf("relists after the paged initial list: %d, want 0", n)
	}
	before := len(probe.since(0))

	own.APIServer().Kill()
	other := dynamic.NewForConfigOrDie(second.Config()).Resource(configMaps).Namespace(ns)
	for _, n := range []string{"c0007", "c0611", "c1150"} { // pages 1, 2, 3
		for v := 1; v <= 2; v++ {
			if _, err := other.Patch(ctx, n, types.MergePatchType, []byte(fmt.Sprintf(`{"data":{"v":"gap%d"}}`, v)), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []string{"c0420", "c0999"} { // pages 1, 2
		if err := other.Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Create(ctx, cm("c1300", nil, map[string]any{"v": "new"}), metav1.CreateOptions{}); err != nil { // page 3
		t.Fatal(err)
	}
	if _, err := own.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := own.APIServer().Start(); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"c0007": "modified", "c0611": "modified", "c1150": "modified", "c0420": "deleted", "c0999": "deleted", "c1300": "added"}
	waitN(2 + len(want))
	time.Sleep(3 * time.Second) // anything more (a second gap, unchanged objects) arrives now
	evs = read()
	var gaps int
	gotChanges := map[string]string{}
	for _, e := range evs[1:] {
		if e.Type == "io.kubefeed.gap" {
			gaps++
			continue
		}
		if _, dup := gotChanges[e.Name]; dup {
			t.Errorf("%s: more than one event after the outage", e.Name)
		}
		gotChanges[e.Name] = e.change()
		if !e.Data.Recovered {
			t.Errorf("%s %s after the outage not marked recovered", e.change(), e.Name)
		}
		if e.change() == "modified" && !hasOp(e.Data.Patch, "replace", "/data/v", "gap2") {
			t.Errorf("%s: patch %v, want replace /data/v gap2", e.Name, e.Data.Patch)
		}
	}
	if gaps != 1 || evs[1].Type != "io.kubefeed.gap" {
		t.Errorf("%d gap markers after the outage, want exactly one, first:\n%s", gaps, summary(evs))
	}
	if fmt.Sprint(gotChanges) != fmt.Sprint(want) {
		t.Errorf("recovered changes %v, want %v (%d events after the outage)", gotChanges, want, len(evs)-1)
	}
	relist := probe.since(before)
	if cont, items := pages(relist); cont < 2 || items < 1199 {
		t.Errorf("relist: %d continued pages, %d items in %d calls; want a paged relist of all 1199 objects", cont, items, len(relist))
	}
	if ex.Relists() == 0 {
		t.Error("no relist counted")
	}
}
