package exporter

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// A checkpoint restored for one sink marks only that sink's initial-list
// changes recovered, not those of another sink fed by the same scope.
func TestRestoreGapStaysWithItsSink(t *testing.T) {
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind,
		Watch: []config.Watch{{Resource: "pods"}},
		Sinks: []config.Sink{{Name: "restored", Stdout: &config.StdoutSink{}}, {Name: "fresh", Stdout: &config.StdoutSink{}}}}
	cfg.SetDefaults()
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"restored": &discard{}, "fresh": &discard{}}, Logger: zap.NewNop(), allowNoClient: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &scope{id: scopeID{GVR: benchRes.GVR}, name: "pods", res: benchRes, ex: ex, stop: make(chan struct{}), log: zap.NewNop(), rules: ex.rules}
	s.informer = cache.NewSharedIndexInformer(&cache.ListWatch{}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	restored, fresh := ex.byName["restored"], ex.byName["fresh"]
	s.addRoute(restored, false)
	s.addRoute(fresh, false)
	s.routes[0].restoreGap = newGap("c", s.id, time.Unix(0, 0), time.Now(), GapRestart)

	s.onAdd(pod("p", 1), true)
	k := Key{GVR: benchRes.GVR, Namespace: "bench", Name: "p"}
	if restored.takeRecovered(k) == nil {
		t.Error("the restored sink's change is not marked recovered")
	}
	if g := fresh.takeRecovered(k); g != nil {
		t.Errorf("the other sink's change was marked recovered by %s", g.ev.ID)
	}
}
