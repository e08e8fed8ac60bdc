package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// configMapsOnly resolves configmaps and nothing else.
type configMapsOnly struct{}

func (configMapsOnly) Resolve(string) (resource.Resource, error) {
	return resource.Resource{GVR: configMapsGVR, GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespaced: true}, nil
}
func (configMapsOnly) Reset() {}

// listOnly is a fake dynamic client that refuses watch-list requests, as an
// API server without the WatchList feature does: the fake client would
// accept them and never send the bookmark that ends the initial list, so
// the informers would never sync.
type listOnly struct{ dynamic.Interface }

func (c listOnly) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return listOnlyResource{c.Interface.Resource(gvr)}
}

type listOnlyResource struct {
	dynamic.NamespaceableResourceInterface
}

func (r listOnlyResource) Namespace(ns string) dynamic.ResourceInterface {
	return listOnlyNamespace{r.NamespaceableResourceInterface.Namespace(ns)}
}

type listOnlyNamespace struct{ dynamic.ResourceInterface }

func (r listOnlyNamespace) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		return nil, apierrors.NewBadRequest("sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
	}
	return r.ResourceInterface.Watch(ctx, o)
}

// A sink that cannot be opened at start (a regular file stands where its
// directory should be) shows, through the sinks the pipeline really hands
// the exporter (built, then fenced): /readyz answers 503 naming it, and
// kubefeed_sink_ready is 0 for it and 1 for the sink that opened. Once it
// can be opened (the file is removed), the background retry opens it:
// /readyz answers 200 and the gauge is 1.
func TestUnopenedSinkShowsInReadyzAndSinkReady(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "later")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Cluster: "test",
		Watch: []config.Watch{{Resource: "configmaps"}},
		Sinks: []config.Sink{
			{Name: "now", File: &config.FileSink{Path: filepath.Join(dir, "now.jsonl")}},
			{Name: "late", File: &config.FileSink{Path: filepath.Join(blocker, "late.jsonl")}},
		}}
	cfg.SetDefaults()
	log := zaptest.NewLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	ss, err := pipelineSinks(ctx, context.WithoutCancel(ctx), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	dyn := listOnly{dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{configMapsGVR: "ConfigMapList"})}
	ex, err := exporter.New(exporter.Options{Config: cfg, Client: dyn, Resolver: configMapsOnly{}, Sinks: ss, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h := healthHandler(config.Metrics{}, ex.Healthy, reg)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	gauge := func(sink string) string {
		_, body := get("/metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, `kubefeed_sink_ready{sink="`+sink+`"} `); ok {
				return v
			}
		}
		return "absent"
	}
	// Wait until the exporter started (/readyz no longer says "starting");
	// the sink stays unopened meanwhile (its directory cannot be made).
	waitFor(t, "the exporter started", func() bool {
		_, body := get("/readyz")
		return !strings.Contains(body, "starting")
	})
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "sink late not open") {
		t.Errorf("/readyz = %d %q, want 503 naming sink late as not open", code, body)
	}
	if g := gauge("late"); g != "0" {
		t.Errorf(`kubefeed_sink_ready{sink="late"} = %s, want 0`, g)
	}
	if g := gauge("now"); g != "1" {
		t.Errorf(`kubefeed_sink_ready{sink="now"} = %s, want 1`, g)
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz 200 once the sink opened", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
	if g := gauge("late"); g != "1" {
		t.Errorf(`kubefeed_sink_ready{sink="late"} = %s after it opened, want 1`, g)
	}
}

// waitFor polls cond for up to 30s (a liveness bound: the Deferred sink
// retries after 1s, 2s, 4s, …).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
