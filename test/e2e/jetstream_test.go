package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/webhook"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// jetStreamSink builds the sink as `kubefeed run` would from this config.
func jetStreamSink(t *testing.T, url string, tweak func(*config.JetStreamSink)) *jetstream.Sink {
	t.Helper()
	c := config.Config{Sinks: []config.Sink{{Name: "js", JetStream: &config.JetStreamSink{
		NATSConnection: config.NATSConnection{Servers: []string{url}},
		Stream:         "KUBEFEED",
		Provision:      &config.StreamProvision{DuplicateWindow: config.Duration{Duration: 10 * time.Minute}},
	}}}}
	c.SetDefaults()
	jc := c.Sinks[0].JetStream
	if tweak != nil {
		tweak(jc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jetstream.New(ctx, jetstream.Options{Config: *jc, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// streamLines returns the bodies stored in the stream, in stream order.
func streamLines(t *testing.T, url string) [][]byte {
	t.Helper()
	msgs, err := natstest.ReadStream(url, "KUBEFEED")
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.Data
	}
	return out
}

// burst makes exactly 10,000 changes over ConfigMaps and Widgets in two
// namespaces with 16 concurrent writers, leaving 500 objects alive. During
// tolerate (if set) writes are retried, not failed.
func burst10k(t *testing.T, nss []string) {
	t.Helper()
	_, dyn := clients(t)
	ctx := context.Background()
	const objects = 2500
	type obj struct {
		gvr  schema.GroupVersionResource
		ns   string
		name string
	}
	objs := make([]obj, objects)
	for i := range objs {
		gvr := configMaps
		if i%2 == 1 {
			gvr = widgets
		}
		objs[i] = obj{gvr, nss[i%len(nss)], fmt.Sprintf("b%d", i)}
	}
	// Phases: create all; update all twice; delete 2000; update the other 500.
	phase := func(name string, idx []int, op func(o obj, i int) error) {
		g := errgroup.Group{}
		g.SetLimit(16)
		for _, i := range idx {
			g.Go(func() error { return op(objs[i], i) })
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	all := make([]int, objects)
	for i := range all {
		all[i] = i
	}
	create := func(o obj, i int) error {
		var err error
		if o.gvr == widgets {
			_, err = dyn.Resource(o.gvr).Namespace(o.ns).Create(ctx, widget(o.name, map[string]any{"v": int64(0)}), metav1.CreateOptions{})
		} else {
			_, err = dyn.Resource(o.gvr).Namespace(o.ns).Create(ctx, cm(o.name, nil, map[string]any{"v": "0"}), metav1.CreateOptions{})
		}
		return err
	}
	update := func(v int) func(o obj, i int) error {
		return func(o obj, i int) error {
			patch := fmt.Sprintf(`{"data":{"v":"%d"}}`, v)
			if o.gvr == widgets {
				patch = fmt.Sprintf(`{"spec":{"v":%d}}`, v)
			}
			_, err := dyn.Resource(o.gvr).Namespace(o.ns).Patch(ctx, o.name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
			return err
		}
	}
	del := func(o obj, i int) error {
		return dyn.Resource(o.gvr).Namespace(o.ns).Delete(ctx, o.name, metav1.DeleteOptions{})
	}
	phase("create", all, create)
	phase("update 1", all, update(1))
	phase("update 2", all, update(2))
	phase("delete", all[:2000], del)
	phase("update 3", all[2000:], update(3))
}

// burstConfig sends the burst resources of nss to the JetStream sink "js",
// with more sinks if given.
func burstConfig(nss []string, moreSinks string) string {
	return "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nworkers: 8\n" + burstWatch(nss...) +
		"sinks:\n  - {name: js, jetstream: {servers: [nats://unused:4222], stream: KUBEFEED}}\n" + moreSinks
}

func checkStream(t *testing.T, lines [][]byte) (events, unique int) {
	t.Helper()
	seen := map[string]bool{}
	var evs []got
	for _, l := range lines {
		var e got
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if seen[e.ID] {
			t.Errorf("stream holds id %s twice (JetStream de-duplication failed)", e.ID)
		}
		seen[e.ID] = true
		evs = append(evs, e)
	}
	checkOrder(t, "jetstream", evs)
	return len(lines), len(seen)
}

func TestJetStream10kChangesRebuildListedState(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "js-a", nil), namespace(t, "js-b", nil)}
	srv := natstest.StartT(t, natstest.Options{})
	s := jetStreamSink(t, srv.URL(), nil)
	startExporter(t, burstConfig(nss, ""), map[string]sinks.Sink{"js": s})
	start := time.Now()
	burst10k(t, nss)
	t.Logf("10,000 changes written in %v", time.Since(start).Round(time.Millisecond))
	c := rebuildsListed(t, func() [][]byte { return streamLines(t, srv.URL()) }, nss...)
	if c.rebased != 0 || c.unknownDeletes != 0 {
		t.Errorf("without failures: %d rebased patches, %d unknown deletes; want none", c.rebased, c.unknownDeletes)
	}
	n, _ := checkStream(t, streamLines(t, srv.URL()))
	// Level-based: versions may merge under load, but every object has at
	// least its added event and, for the 2000 deleted, its deleted event.
	if n < 2500+2000 || n > 10000 {
		t.Errorf("stream holds %d events for 10,000 changes", n)
	}
	t.Logf("stream holds %d events for 10,000 changes; sink stats %+v", n, s.Stats())
}

func TestJetStreamOutageLosesNothing(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "outage-a", nil), namespace(t, "outage-b", nil)}
	srv := natstest.StartT(t, natstest.Options{})
	s := jetStreamSink(t, srv.URL(), nil)
	rec := &recorder{}
	startExporter(t, burstConfig(nss, "  - {name: rec, stdout: {}}\n"), map[string]sinks.Sink{"js": s, "rec": rec})
	burstThroughOutage(t, nss, srv.Shutdown, srv.Restart)
	rebuildsListed(t, func() [][]byte { return streamLines(t, srv.URL()) }, nss...)
	cfgPath := writeFile(t, "c.yaml", strings.Replace(burstConfig(nss, ""), "nats://unused:4222", srv.URL(), 1))
	verifyMatches(t, cp.Kubeconfig(), cfgPath, "js", len(listed(t, nss, burstResources)))
	n, unique := checkStream(t, streamLines(t, srv.URL()))
	t.Logf("after a 20s outage: %d events stored, %d unique; sink stats %+v", n, unique, s.Stats())
	// The second sink never failed: it got every change while NATS was down.
	if got := len(rec.snapshot()); got != 10000 {
		t.Errorf("healthy sink got %d events, want 10000", got)
	}
}

func TestFlakyWebhookDoesNotHoldBackHealthySink(t *testing.T) {
	ns := namespace(t, "hook", nil)
	var mu sync.Mutex
	down := true
	received := map[string]string{} // name -> last data.v seen
	r := rand.New(rand.NewSource(7))
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var e got
		_ = decodeBody(req, &e)
		mu.Lock()
		isDown, roll := down, r.Intn(10)
		mu.Unlock()
		switch {
		case isDown:
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		case roll < 4: // 40%: server error
			http.Error(w, "flaky", http.StatusInternalServerError)
			return
		case roll == 4: // 10%: hang past the client's timeout
			select {
			case <-time.After(2 * time.Second):
			case <-release:
			}
			return
		}
		mu.Lock()
		received[e.Name] = fmt.Sprint(e.Data.Object["data"].(map[string]any)["v"])
		mu.Unlock()
	}))
	defer srv.Close()
	hook, err := webhook.New(webhook.Options{Config: config.WebhookSink{URL: srv.URL, Timeout: config.Duration{Duration: 500 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	healthy := &recorder{}
	startExporter(t, cfgFor("  - resource: configmaps\n    namespaces: [hook]\n")+"  - {name: hook, webhook: {url: 'http://unused'}}\n",
		map[string]sinks.Sink{"rec": healthy, "hook": hook})
	_, dyn := clients(t)
	ctx := context.Background()
	const n = 30
	for i := 0; i < n; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm(fmt.Sprintf("h%d", i), nil, map[string]any{"v": "1"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The webhook is down: the healthy sink still gets everything.
	healthy.waitFor(t, n)
	mu.Lock()
	if len(received) != 0 {
		t.Errorf("webhook received %d events while down", len(received))
	}
	down = false
	mu.Unlock()
	for i := 0; i < n; i++ {
		patch := `{"data":{"v":"2"}}`
		if _, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, fmt.Sprintf("h%d", i), "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	healthy.waitFor(t, 2*n)
	// A liveness bound, not a timing one: half the webhook's answers fail,
	// and a key's retries back off exponentially up to 30s (RetryCap), so
	// one of 30 keys failing 8 times in a row (about 5% of runs) took more
	// than the 60s this bound used to be; 3 minutes leave room for 12.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		mu.Lock()
		done := len(received) == n
		for _, v := range received {
			done = done && v == "2"
		}
		snapshot := fmt.Sprint(received)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flaky webhook never caught up: %s", snapshot)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestOversizedObjectFollowsPolicy(t *testing.T) {
	ns := namespace(t, "oversize", nil)
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 256 << 10})
	s := jetStreamSink(t, srv.URL(), nil)
	startExporter(t, cfgFor("  - resource: configmaps\n    namespaces: [oversize]\n"), map[string]sinks.Sink{"rec": s})
	_, dyn := clients(t)
	ctx := context.Background()
	big := strings.Repeat("x", 700<<10) // 700 KiB: fits the API server's 1 MiB, not the 256 KiB payload
	o, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm("big", nil, map[string]any{"blob": big, "v": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, "big", "application/merge-patch+json", []byte(`{"data":{"v":"2"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	deadline := time.Now().Add(30 * time.Second)
	for len(lines) < 2 && time.Now().Before(deadline) {
		lines = streamLines(t, srv.URL())
		time.Sleep(100 * time.Millisecond)
	}
	if len(lines) != 2 {
		t.Fatalf("stream holds %d events, want 2", len(lines))
	}
	for i, l := range lines {
		var e got
		_ = jsonUnmarshal(l, &e)
		var trunc struct {
			Data struct{ Truncated string } `json:"data"`
		}
		_ = jsonUnmarshal(l, &trunc)
		if trunc.Data.Truncated != sinks.TruncatedObject || e.UID != string(o.GetUID()) || e.Data.Object["data"] != nil {
			t.Errorf("event %d: truncated %q uid %s, object %v", i, trunc.Data.Truncated, e.UID, e.Data.Object)
		}
		if i == 1 && (len(e.Data.Patch) != 1 || e.Data.Patch[0]["path"] != "/data/v") {
			t.Errorf("modified event lost its patch: %v", e.Data.Patch)
		}
	}
	if st := s.Stats(); st.Shrunk != 2 {
		t.Errorf("stats %+v, want 2 shrunk", st)
	}
}

// burstThroughOutage runs burst10k over nss while the destination is
// stopped 1s into the burst, for 20s, then started again.
func burstThroughOutage(t *testing.T, nss []string, stop func(), restart func() error) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Second)
		stop()
		time.Sleep(20 * time.Second)
		if err := restart(); err != nil {
			t.Error(err)
		}
	}()
	burst10k(t, nss)
	wg.Wait()
}
