package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/test/cluster"
)

var cp *cluster.ControlPlane

func TestMain(m *testing.M) {
	var err error
	cp, err = cluster.Start(cluster.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start control plane:", err)
		os.Exit(1)
	}
	code := m.Run()
	cp.Stop()
	_ = os.RemoveAll(cp.Dir)
	os.Exit(code)
}

func clients(t testing.TB) (*kubernetes.Clientset, dynamic.Interface) {
	t.Helper()
	return kubernetes.NewForConfigOrDie(cp.Config()), dynamic.NewForConfigOrDie(cp.Config())
}

// namespace creates a namespace for one test.
func namespace(t testing.TB, name string, labels map[string]string) string {
	t.Helper()
	cs, _ := clients(t)
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// running is an exporter started for a test.
type running struct {
	ex   *exporter.Exporter
	stop func() error
}

// startExporter parses cfg (YAML) and runs an exporter with the given sinks
// until the test ends. It returns once the caches synced.
func startExporter(t testing.TB, cfgYAML string, ss map[string]sinks.Sink) *running {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	_, dyn := clients(t)
	dc := discovery.NewDiscoveryClientForConfigOrDie(cp.Config())
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ex, err := exporter.New(exporter.Options{
		Config: cfg, Client: dyn, RESTConfig: cp.Config(), Resolver: resource.NewDiscoveryResolver(dc), Sinks: ss, Logger: log,
		ResolveRetry: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(30 * time.Second)
	for !ex.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("exporter not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &running{ex: ex, stop: stop}
}

// got is a recorded event, decoded from the exact bytes a JSON sink writes.
type got struct {
	Type            string `json:"type"`
	ID              string `json:"id"`
	Subject         string `json:"subject"`
	Kind            string `json:"kind"`
	APIVersion      string `json:"apiversion"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceversion"`
	Data            struct {
		Object                  map[string]any   `json:"object"`
		Patch                   []map[string]any `json:"patch"`
		ChangedPaths            []string         `json:"changedPaths"`
		PreviousResourceVersion string           `json:"previousResourceVersion"`
		Recovered               bool             `json:"recovered"`
	} `json:"data"`
	raw []byte
}

func (g got) change() string { return strings.TrimPrefix(g.Type, event.TypePrefix) }

// recorder is a sink that keeps what it was sent, and can fail on purpose.
type recorder struct {
	mu        sync.Mutex
	events    []got
	calls     int
	failFirst int // fail this many Send calls first
	failEvery int // then fail every n-th call (0: never)
}

var _ sinks.Sink = (*recorder)(nil)

func (r *recorder) Send(ctx context.Context, evs []*event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.failFirst || (r.failEvery > 0 && r.calls%r.failEvery == 0) {
		return errors.New("injected failure")
	}
	for _, e := range evs {
		b, err := event.Marshal(e)
		if err != nil {
			return sinks.Permanent(err)
		}
		var g got
		if err := json.Unmarshal(b, &g); err != nil {
			return sinks.Permanent(err)
		}
		g.raw = b
		r.events = append(r.events, g)
	}
	return nil
}

func (r *recorder) Close(context.Context) error { return nil }

func (r *recorder) snapshot() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got(nil), r.events...)
}

// waitFor waits until at least n events arrived and returns them.
func (r *recorder) waitFor(t testing.TB, n int) []got {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := r.snapshot()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events, want %d:\n%s", len(evs), n, summary(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiet asserts that no more than n events arrive within d.
func (r *recorder) quiet(t testing.TB, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if evs := r.snapshot(); len(evs) != n {
		t.Fatalf("got %d events, want exactly %d:\n%s", len(evs), n, summary(evs))
	}
}

func summary(evs []got) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s rv=%s paths=%v\n", e.change(), e.Subject, e.ResourceVersion, e.Data.ChangedPaths)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	configMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	widgets     = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

func cm(name string, labels map[string]string, data map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": data}}
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func cmTyped(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"}}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func decodeBody(r *http.Request, v any) error {
	defer r.Body.Close()
	return json.NewDecoder(r.Body).Decode(v)
}
