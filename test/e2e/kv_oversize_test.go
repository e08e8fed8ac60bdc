package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// With a JetStream KV checkpoint on a server whose max_payload is 256 KiB,
// one ConfigMap whose checkpoint record cannot fit (700 KiB of random
// data: gzip does not shrink it) must not hold anything back: it and 8
// normal ConfigMaps are delivered (the big one shrunk by the JetStream
// sink's policy), later changes of all 9 still flow, SIGTERM ends the
// process with exit 0 within shutdownTimeout plus a margin, the big
// object's record is kept without its state, and after a restart a change
// of it made while kubefeed was down arrives as a recovered modification.
func TestKVCheckpointWithOversizedRecord(t *testing.T) {
	ns := namespace(t, "kvbig", nil)
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 256 << 10})
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
shutdownTimeout: 5s
watch:
  - {resource: configmaps, namespaces: [%[2]s]}
sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kvbig}
`, srv.URL(), ns))
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()
	read := func() []got {
		var out []got
		for _, l := range streamLines(t, srv.URL()) {
			var g got
			if err := jsonUnmarshal(l, &g); err != nil {
				t.Fatal(err)
			}
			g.raw = l
			out = append(out, g)
		}
		return out
	}
	waitStreamFor := func(what string, ok func([]got) bool) []got {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			evs := read()
			if ok(evs) {
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited 2m for %s; stream:\n%s", what, summary(evs))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	names := []string{"big"}
	for i := 0; i < 8; i++ {
		names = append(names, fmt.Sprintf("small%d", i))
	}
	allHave := func(change string, from int) func([]got) bool {
		return func(evs []got) bool {
			if len(evs) < from {
				return false
			}
			for _, n := range names {
				if !has(evs[from:], change, n) {
					return false
				}
			}
			return true
		}
	}

	p := startKubefeedReady(t, cfg)
	noise := make([]byte, 525<<10)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	blob := base64.StdEncoding.EncodeToString(noise) // 700 KiB, incompressible
	if _, err := cms.Create(ctx, cm("big", nil, map[string]any{"blob": blob, "v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if _, err := cms.Create(ctx, cm(n, nil, map[string]any{"v": "1"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	evs := waitStreamFor("9 added events", allHave("added", 0))
	for _, e := range evs {
		if e.Name == "big" && !strings.Contains(string(e.raw), sinks.TruncatedObject) {
			t.Errorf("the big object's event is not shrunk as the sink's policy says: %.300s", e.raw)
		}
	}

	// Later changes still flow, for the big object and the others.
	for _, n := range names {
		if _, err := cms.Patch(ctx, n, types.MergePatchType, []byte(`{"data":{"v":"2"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitStreamFor("9 modified events", allHave("modified", 0))

	start := time.Now()
	code := p.term(5*time.Second + 30*time.Second)
	if code != 0 {
		t.Fatalf("SIGTERM: exit code %d after %v, want 0 within shutdownTimeout (5s) + 30s", code, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start).Round(time.Millisecond))

	// Every object has a record; the big one's is kept without its state.
	var recs []atRest
	for _, r := range kvRecords(t, srv.URL(), "kvbig") {
		k, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(r.key, "s.js."))
		if err != nil {
			t.Fatalf("KV key %s: %v", r.key, err)
		}
		if !strings.Contains(string(k), "\x00") { // not the scope's sentinel
			recs = append(recs, r)
		}
	}
	if len(recs) != len(names) {
		t.Errorf("KV holds %d records, want %d", len(recs), len(names))
	}
	bigKey := "s.js." + base64.RawURLEncoding.EncodeToString([]byte("/v1/configmaps/"+ns+"/big"))
	for _, r := range recs {
		switch {
		case r.key == bigKey && r.hasState:
			t.Errorf("the big object's record holds a state of %d bytes over a 256 KiB payload", len(r.state))
		case r.key != bigKey && !r.hasState:
			t.Errorf("record %s lost its state", r.key)
		}
	}

	// Changed while down: after the restart the big object is known (a
	// modification, not an addition), and the others stay quiet.
	if _, err := cms.Patch(ctx, "big", types.MergePatchType, []byte(`{"data":{"v":"3"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	before := len(read())
	p = startKubefeedReady(t, cfg)
	evs = waitStreamFor("a recovered modification of big", func(evs []got) bool { return has(evs[before:], "modified", "big") })
	for _, e := range evs[before:] {
		switch {
		case e.Type == "io.kubefeed.gap":
		case e.Name == "big" && e.change() == "modified" && e.Data.Recovered:
		default:
			t.Errorf("unexpected event after the restart: %s %s recovered=%v", e.change(), e.Name, e.Data.Recovered)
		}
	}
	if code := p.term(35 * time.Second); code != 0 {
		t.Errorf("second SIGTERM: exit code %d, want 0", code)
	}
}
