package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// The API server kubefeed talks to is SIGKILLed; through a second API
// server on the same etcd, objects are deleted, changed and created, and
// etcd is compacted; the first comes back. kubefeed relists and sends
// exactly those changes, marked recovered, after a gap marker. The API
// server serves watch-list, so the first list and the relist are both
// streamed (no List request): the relist is told on the watch request.
func TestAPIServerOutageRecoversExactlyTheChanges(t *testing.T) {
	own := cluster.StartT(t, cluster.Options{})
	second, err := own.AddAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(own.Config())
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace("default")
	for i := 0; i < 6; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("k%d", i), nil, map[string]any{"v": "0"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A JetStream sink next to the recorder, for `kubefeed verify`. Its rule
	// emits the initial list, so that its stream holds every object and
	// verify compares them all (the recorder's rule does not, as before).
	srv := natstest.StartT(t, natstest.Options{})
	cfgYAML := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nwatch:\n" +
		"  - {resource: configmaps, namespaces: [default], sinks: [rec]}\n" +
		"  - {resource: configmaps, namespaces: [default], sinks: [js], initialList: emit}\n" +
		"sinks:\n  - {name: rec, stdout: {}}\n  - {name: js, jetstream: {servers: [" + srv.URL() + "], stream: KUBEFEED}}\n"
	cfg, err := config.Parse("t.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	probe := &pagingProbe{Interface: dyn}
	ex, err := exporter.New(exporter.Options{
		Config: cfg, Client: probe, Resolver: resource.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(own.Config())),
		Sinks: map[string]sinks.Sink{"rec": rec, "js": jetStreamSink(t, srv.URL(), nil)}, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ex.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	for !ex.Ready() {
		time.Sleep(20 * time.Millisecond)
	}
	// A live change first, so the watch has a recent resourceVersion.
	if _, err := cms.Patch(ctx, "k0", types.MergePatchType, []byte(`{"data":{"v":"live"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)

	own.APIServer().Kill()
	other := dynamic.NewForConfigOrDie(second.Config()).Resource(configMaps).Namespace("default")
	if err := other.Delete(ctx, "k1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // several versions of k2: they merge into one modified
		if _, err := other.Patch(ctx, "k2", types.MergePatchType, []byte(fmt.Sprintf(`{"data":{"v":"gap%d"}}`, i)), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Create(ctx, cm("k9", nil, map[string]any{"v": "new"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := own.APIServer().Start(); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, 5)
	rec.quiet(t, 5, 2*time.Second)
	if evs[1].Type != "io.kubefeed.gap" {
		t.Fatalf("first event after the outage is %s, want the gap marker:\n%s", evs[1].Type, summary(evs))
	}
	got := map[string]string{}
	for _, e := range evs[2:] {
		got[e.Name] = e.change()
		if !e.Data.Recovered {
			t.Errorf("%s %s not marked recovered", e.change(), e.Name)
		}
	}
	want := map[string]string{"k1": "deleted", "k2": "modified", "k9": "added"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recovered events %v, want %v", got, want)
	}
	if ex.Relists() == 0 {
		t.Error("no relist counted")
	}
	if calls := probe.since(0); len(calls) != 0 {
		t.Errorf("%d List requests: the lists were not streamed as watch-lists", len(calls))
	}
	// The JetStream sink caught up too, and verify agrees with its stream.
	listNow := func() map[string]map[string]any {
		return listedOn(t, dyn, []string{"default"}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"})
	}
	eventuallyRebuilds(t, func() [][]byte { return streamLines(t, srv.URL()) }, listNow)
	verifyMatches(t, own.Kubeconfig(), writeFile(t, "c.yaml", cfgYAML), "js", len(listNow()))
}

// A watch that delivers nothing for watchTimeout is restarted, and nothing
// is lost across the restart.
func TestStalledWatchIsRestarted(t *testing.T) {
	ns := namespace(t, "stall", nil)
	rec := &recorder{}
	r := startExporter(t, "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatchTimeout: 300ms\nwatch:\n  - {resource: configmaps, namespaces: [stall]}\nsinks:\n  - {name: rec, stdout: {}}\n",
		map[string]sinks.Sink{"rec": rec})
	deadline := time.Now().Add(20 * time.Second)
	for r.ex.Stalls() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if r.ex.Stalls() < 2 {
		t.Fatalf("stalls = %d after an idle period, want the watch restarted", r.ex.Stalls())
	}
	_, dyn := clients(t)
	for i := 0; i < 5; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(context.Background(), cm(fmt.Sprintf("s%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A restarted watch may relist (then a gap marker precedes recovered
	// events): what matters is that each object arrives exactly once.
	count := func() map[string]int {
		added := map[string]int{}
		for _, e := range rec.snapshot() {
			if e.Type != "io.kubefeed.gap" {
				added[e.change()+" "+e.Name]++
			}
		}
		return added
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		added := count()
		if len(added) == 5 {
			time.Sleep(500 * time.Millisecond)
			for k, n := range count() {
				if n != 1 || !strings.HasPrefix(k, "added ") {
					t.Errorf("%s: %d events", k, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want 5 added objects", added)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
