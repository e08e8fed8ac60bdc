package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// A leader whose JetStream sink cannot be opened (its stream does not
// exist, and the sink does not provision it) keeps the Lease and runs:
// the file sink delivers, /readyz answers 503 naming the JetStream sink and
// why, and kubefeed_sink_ready is 0 for it (1 for the file sink). Once the
// stream is created, the background retry opens the sink: /readyz answers
// 200, the gauge is 1, and the change made meanwhile reaches the stream.
func TestMissingStreamHoldsBackOnlyItsSinkAndShowsInReadyz(t *testing.T) {
	ns := namespace(t, "sink-open", nil)
	lns := namespace(t, "sink-open-lease", nil)
	srv := natstest.StartT(t, natstest.Options{})
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[2]s]}
sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED}
  - name: file
    file: {path: %[4]s}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[3]s, name: kubefeed, leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 1s}
`, srv.URL(), ns, lns, out))
	p := startKubefeed(t, cfg)
	hc := &http.Client{Timeout: 2 * time.Second}
	readyz := func() (int, string) {
		resp, err := hc.Get("http://" + p.metrics + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if p.exited() {
				t.Fatalf("kubefeed exited (%v) waiting for %s", p.waitErr, what)
			}
			if time.Now().After(deadline) {
				code, body := readyz()
				t.Fatalf("timed out waiting for %s (last /readyz: %d %s)", what, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Leading, synced, with the JetStream sink not open.
	poll("the leader's /readyz to name sink js as not open", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "sink js not open")
	})
	code, body := readyz()
	if !strings.Contains(body, "stream KUBEFEED not found") {
		t.Errorf("/readyz = %d %q, want the reason (stream KUBEFEED not found)", code, body)
	}
	metrics := scrape(t, p.metrics)
	if v := metricValue(t, metrics, `kubefeed_sink_ready{sink="js"}`); v != 0 {
		t.Errorf(`kubefeed_sink_ready{sink="js"} = %v, want 0`, v)
	}
	if v := metricValue(t, metrics, `kubefeed_sink_ready{sink="file"}`); v != 1 {
		t.Errorf(`kubefeed_sink_ready{sink="file"} = %v, want 1`, v)
	}
	if v := metricValue(t, metrics, "kubefeed_leader"); v != 1 {
		t.Errorf("kubefeed_leader = %v, want 1", v)
	}
	m := identityRE.FindStringSubmatch(p.logs.String())
	if m == nil {
		t.Fatalf("no identity in the log:\n%s", p.logs.String())
	}
	if h := leaseHolder(t, lns); h != m[1] {
		t.Errorf("Lease held by %q, want this replica (%s) to keep it", h, m[1])
	}

	// The file sink delivers meanwhile.
	_, dyn := clients(t)
	if _, err := dyn.Resource(configMaps).Namespace(ns).Create(context.Background(), cm("meanwhile", nil, map[string]any{"v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the file sink to get the ConfigMap", func() bool {
		for _, l := range readLines(t, out) {
			if bytes.Contains(l, []byte(`"name":"meanwhile"`)) {
				return true
			}
		}
		return false
	})
	if n := len(streamLines(t, srv.URL())); n != 0 {
		t.Errorf("the missing stream holds %d messages", n)
	}

	// The stream appears: the sink opens and catches up.
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"kubefeed.test.>"}}); err != nil {
		t.Fatal(err)
	}
	poll("/readyz 200 once the stream exists", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	if v := metricValue(t, scrape(t, p.metrics), `kubefeed_sink_ready{sink="js"}`); v != 1 {
		t.Errorf(`kubefeed_sink_ready{sink="js"} = %v after the stream was created, want 1`, v)
	}
	poll("the stream to get the ConfigMap made while it was missing", func() bool {
		for _, e := range streamEvents(t, srv.URL()) {
			if e.Name == "meanwhile" && strings.HasSuffix(e.ID, ".added") {
				return true
			}
		}
		return false
	})
	if p.exited() {
		t.Fatalf("kubefeed exited: %v", p.waitErr)
	}
}
