package e2e

// The OTLP sink end to end: `kubefeed run` (or the exporter in process)
// against the real API server and a real OpenTelemetry Collector
// (otlp_collector_test.go); what reaches the Collector's file exporter is
// decoded with the Collector's own plog JSON unmarshaler.

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/otlp"
)

// otlpPipeline is an otlp sink of `kubefeed run` and the Collector's
// pipeline of the same name: its shape, protocol, and more of the sink's
// block (", tls: {…}").
type otlpPipeline struct{ name, shape, protocol, extra string }

// otlpPipelines: one per shape and protocol.
var otlpPipelines = []otlpPipeline{
	{"k8s-grpc", otlp.ShapeK8sObjects, otlp.ProtocolGRPC, ""},
	{"k8s-http", otlp.ShapeK8sObjects, otlp.ProtocolHTTP, ""},
	{"entity-grpc", otlp.ShapeEntity, otlp.ProtocolGRPC, ""},
	{"entity-http", otlp.ShapeEntity, otlp.ProtocolHTTP, ""},
}

// Both shapes, over gRPC and HTTP, from `kubefeed run`: every change of a
// ConfigMap and a Secret reaches the Collector with the change's time, the
// object the other sinks get (the Secret redacted alike), the patch, and
// the shape's names.
func TestOTLPShapesReachTheCollector(t *testing.T) {
	col := startOtelcol(t, "k8s-grpc", "k8s-http", "entity-grpc", "entity-http")
	otlpMatchesFileSink(t, "otlp-shapes", col, otlpPipelines)
}

// otlpPipelineNames are the names of pipes.
func otlpPipelineNames(pipes []otlpPipeline) []string {
	var out []string
	for _, p := range pipes {
		out = append(out, p.name)
	}
	return out
}

// otlpMatchesFileSink runs `kubefeed run` with a file sink and an otlp
// sink per pipeline to col, makes five changes of a ConfigMap and a
// Secret, and checks that each pipeline's records match the file sink's
// events.
func otlpMatchesFileSink(t *testing.T, nsName string, col *otelcol, pipes []otlpPipeline) {
	t.Helper()
	ns := namespace(t, nsName, nil)
	dir := t.TempDir()
	var sinksYAML strings.Builder
	for _, p := range pipes {
		fmt.Fprintf(&sinksYAML, "  - name: %s\n    otlp: {endpoint: '%s', protocol: %s, shape: %s, batch: 64, linger: 5ms%s}\n", p.name, col.endpoint(p.name, p.protocol), p.protocol, p.shape, p.extra)
	}
	cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: otlp-test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
  - {resource: secrets, namespaces: [%[1]s]}
sinks:
  - name: file
    file: {path: %[2]s/events.jsonl}
%[3]s`, ns, dir, sinksYAML.String())
	cfgPath := filepath.Join(dir, "kubefeed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubefeedBinary(t), "validate", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	d := startDaemon(t, cfgPath)

	cs, dyn := clients(t)
	ctx := context.Background()
	const secretValue = "hunter2-otlp-secret"
	events := filepath.Join(dir, "events.jsonl")
	// Each change waits for the one before it to reach the file sink:
	// changes made faster than kubefeed sees them may merge into one
	// event (level-based), and this test wants one event each.
	steps := []func() error{
		func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm("app", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: map[string]string{"password": secretValue}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, "app", "application/merge-patch+json", []byte(`{"data":{"k":"w","n":"1"}}`), metav1.PatchOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Secrets(ns).Patch(ctx, "creds", "application/merge-patch+json", []byte(`{"stringData":{"password":"`+secretValue+`-2"}}`), metav1.PatchOptions{})
			return err
		},
		func() error { return dyn.Resource(configMaps).Namespace(ns).Delete(ctx, "app", metav1.DeleteOptions{}) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("change %d: %v", i+1, err)
		}
		deadline := time.Now().Add(time.Minute)
		for len(readLines(t, events)) < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("the file sink holds %d events, want %d; kubefeed's log:\n%s", len(readLines(t, events)), i+1, d.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The file sink's CloudEvents are what every change must match.
	type ce struct {
		got
		Time string `json:"time"`
	}
	var want []ce
	for _, l := range readLines(t, events) {
		var e ce
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		e.raw = l
		want = append(want, e)
	}
	if len(want) != 5 {
		t.Fatalf("file sink holds %d events, want 5:\n%s", len(want), d.logs.String())
	}
	for _, p := range pipes {
		t.Run(p.name, func(t *testing.T) {
			var recs []record
			waitLines(t, p.name+" records", func() bool { recs = col.records(t, p.name); return len(recs) >= len(want) })
			byID := map[string]record{}
			for _, r := range recs {
				byID[r.str(otlp.AttrEventID)] = r
			}
			raw, _ := os.ReadFile(col.file(p.name))
			for _, leak := range []string{secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue))} {
				if strings.Contains(string(raw), leak) {
					t.Errorf("the Collector's file holds the Secret's value %q", leak)
				}
			}
			for _, w := range want {
				r, ok := byID[w.ID]
				if !ok {
					t.Errorf("no record of %s", w.ID)
					continue
				}
				checkOTLPRecord(t, p.shape, ns, w.got, w.Time, r)
			}
		})
	}
}

// checkOTLPRecord compares one record with the CloudEvent the file sink got.
func checkOTLPRecord(t *testing.T, shape, ns string, w got, wantTime string, r record) {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, wantTime)
	if err != nil {
		t.Fatal(err)
	}
	if !r.lr.Timestamp().AsTime().Equal(tm) || !r.lr.ObservedTimestamp().AsTime().Equal(tm) {
		t.Errorf("%s: timestamps %v / %v, want the change's time %v", w.ID, r.lr.Timestamp().AsTime(), r.lr.ObservedTimestamp().AsTime(), tm)
	}
	if r.resource["k8s.cluster.name"] != "otlp-test" {
		t.Errorf("%s: resource %v", w.ID, r.resource)
	}
	body := r.lr.Body().AsRaw()
	kind := strings.ToLower(w.Kind)
	switch shape {
	case otlp.ShapeK8sObjects:
		m, _ := body.(map[string]any)
		wantType := map[string]string{"added": "ADDED", "modified": "MODIFIED", "deleted": "DELETED"}[w.change()]
		if m["type"] != wantType {
			t.Errorf("%s: body.type %v, want %s", w.ID, m["type"], wantType)
		}
		body = m["object"]
		if r.scope != otlp.ScopeK8sObjects || r.resource["k8s.namespace.name"] != ns {
			t.Errorf("%s: scope %q resource %v", w.ID, r.scope, r.resource)
		}
		if r.str("k8s.resource.name") != kind+"s" || r.str("event.domain") != "k8s" || r.str("event.name") != w.Name {
			t.Errorf("%s: k8s.resource.name %q event.domain %q event.name %q", w.ID, r.str("k8s.resource.name"), r.str("event.domain"), r.str("event.name"))
		}
	case otlp.ShapeEntity:
		wantName := otlp.EventEntityState
		if w.change() == "deleted" {
			wantName = otlp.EventEntityDelete
		}
		if r.lr.EventName() != wantName || r.str(otlp.AttrEntityType) != "k8s."+kind {
			t.Errorf("%s: event name %q entity.type %q", w.ID, r.lr.EventName(), r.str(otlp.AttrEntityType))
		}
		if id, _ := r.attr(otlp.AttrEntityID).(map[string]any); id["k8s."+kind+".uid"] != w.UID {
			t.Errorf("%s: entity.id %v, want uid %s", w.ID, id, w.UID)
		}
	}
	if mustJSON(body) != mustJSON(w.Data.Object) {
		t.Errorf("%s: object\n got %s\nwant %s", w.ID, mustJSON(body), mustJSON(w.Data.Object))
	}
	if w.change() == "modified" {
		if mustJSON(r.attr(otlp.AttrPatch)) != mustJSON(w.Data.Patch) || r.str(otlp.AttrPreviousResourceVersion) != w.Data.PreviousResourceVersion {
			t.Errorf("%s: patch %s from %s, want %s from %s", w.ID, mustJSON(r.attr(otlp.AttrPatch)), r.str(otlp.AttrPreviousResourceVersion), mustJSON(w.Data.Patch), w.Data.PreviousResourceVersion)
		}
	}
	if r.str(otlp.AttrEventType) != w.Type || r.str(otlp.AttrResourceVersion) != w.ResourceVersion || r.str(otlp.AttrEventSubject) != w.Subject {
		t.Errorf("%s: type %q rv %q subject %q", w.ID, r.str(otlp.AttrEventType), r.str(otlp.AttrResourceVersion), r.str(otlp.AttrEventSubject))
	}
}

// otlpSink builds a sink as `kubefeed run` would from its block.
func otlpSink(t *testing.T, block config.OTLPSink) sinks.Sink {
	t.Helper()
	c := config.Config{Sinks: []config.Sink{{Name: "otel", OTLP: &block}}}
	c.SetDefaults()
	s, err := otlp.New(otlp.Options{Config: *c.Sinks[0].OTLP, Version: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// A Collector stopped 1s into 10,000 changes and started again 20s later
// loses nothing: each shape's records, read back by the consumer rules,
// rebuild exactly what a LIST returns. Duplicates are allowed (at least
// once) and reported.
func TestOTLPCollectorRestartMidLoadLosesNothing(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "otlp-outage-a", nil), namespace(t, "otlp-outage-b", nil)}
	col := startOtelcol(t, "k8s-grpc", "entity-http")
	ss := map[string]sinks.Sink{
		"k8s":    otlpSink(t, config.OTLPSink{Endpoint: col.endpoint("k8s-grpc", otlp.ProtocolGRPC), Shape: otlp.ShapeK8sObjects}),
		"entity": otlpSink(t, config.OTLPSink{Endpoint: col.endpoint("entity-http", otlp.ProtocolHTTP), Protocol: otlp.ProtocolHTTP, Shape: otlp.ShapeEntity}),
	}
	cfg := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nworkers: 8\n" + burstWatch(nss...) +
		"sinks:\n  - {name: k8s, otlp: {endpoint: 'unused:4317'}}\n  - {name: entity, otlp: {endpoint: 'unused:4317'}}\n"
	startExporter(t, cfg, ss)
	restarts := 0
	burstThroughOutage(t, nss, col.stop, func() error { restarts++; return col.restart() })
	if restarts != 1 {
		t.Fatalf("the Collector was restarted %d times", restarts)
	}
	for _, p := range []string{"k8s-grpc", "entity-http"} {
		c := rebuildsListed(t, func() [][]byte { return col.eventLines(t, p) }, nss...)
		lines := col.eventLines(t, p)
		t.Logf("%s: %d records, %d distinct events, %d duplicates, %d rebased patches, %d deletions of objects created while the Collector was down",
			p, len(lines), len(lines)-c.dups, c.dups, c.rebased, c.unknownDeletes)
		// Every deletion reaches the sink, also of objects that lived and
		// died while it was down (their only event).
		if n := deletedUIDs(t, lines); n != 2000 {
			t.Errorf("%s: %d deleted objects have a deletion record, want 2000", p, n)
		}
	}
}

// kubefeed validate reports bad OTLP options at their position and exits 1.
func TestOTLPValidateReportsBadOptionsAtTheirPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	cfg := `apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - resource: configmaps
sinks:
  - name: otel
    otlp:
      endpoint: collector
      protocol: grpc
      shape: logs
      compression: brotli
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubefeedBinary(t), "validate", "--config", path)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("validate: %v, want exit 1:\n%s", err, out)
	}
	for _, want := range []string{
		path + ":8:17: sinks[0].otlp.endpoint: must be host:port",
		path + ":10:14: sinks[0].otlp.shape: must be k8sobjects or entity, got \"logs\"",
		path + ":11:20: sinks[0].otlp.compression: must be none or gzip, got \"brotli\"",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}

// The sink's TLS against the Collector's TLS receivers, over gRPC and
// HTTP, both shapes: the sink trusts the receivers' CA (tls.caFile); two
// receivers also require a client certificate signed by a CA of their own
// (client_ca_file), which the sink presents (tls.certFile, tls.keyFile).
// Every change arrives as in plaintext.
func TestOTLPTLSReachesTheCollector(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, dir, "server"), newTestCA(t, dir, "client")
	cert, key := serverCA.issue(t, "otelcol", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := clientCA.issue(t, "kubefeed", x509.ExtKeyUsageClientAuth)
	tlsOnly := receiverTLS{certFile: cert, keyFile: key}
	mTLS := receiverTLS{certFile: cert, keyFile: key, clientCAFile: clientCA.CAFile}
	trust := fmt.Sprintf(", tls: {caFile: '%s'}", serverCA.CAFile)
	trustAndPresent := fmt.Sprintf(", tls: {caFile: '%s', certFile: '%s', keyFile: '%s'}", serverCA.CAFile, clientCert, clientKey)
	pipes := []otlpPipeline{
		{"tls-grpc", otlp.ShapeK8sObjects, otlp.ProtocolGRPC, trust},
		{"tls-http", otlp.ShapeEntity, otlp.ProtocolHTTP, trust},
		{"mtls-grpc", otlp.ShapeEntity, otlp.ProtocolGRPC, trustAndPresent},
		{"mtls-http", otlp.ShapeK8sObjects, otlp.ProtocolHTTP, trustAndPresent},
	}
	col := startOtelcolTLS(t, map[string]receiverTLS{"tls-grpc": tlsOnly, "tls-http": tlsOnly, "mtls-grpc": mTLS, "mtls-http": mTLS}, otlpPipelineNames(pipes)...)
	otlpMatchesFileSink(t, "otlp-tls", col, pipes)
}

// A Collector kubefeed cannot trust (its certificate signed by a CA the
// sink was not given), or that refuses kubefeed (mTLS, no client
// certificate), gets nothing: each sink logs the TLS failure as a
// retryable send failure, counts it, holds its events and drops none.
// Killed and started again with the right CA and certificate (the same
// checkpoint), kubefeed delivers every change: the records rebuild what a
// LIST returns, the deletion included.
func TestOTLPTLSUntrustedCollectorGetsNothingAndLosesNothing(t *testing.T) {
	dir := t.TempDir()
	serverCA, otherCA, clientCA := newTestCA(t, dir, "server"), newTestCA(t, dir, "other"), newTestCA(t, dir, "client")
	cert, key := serverCA.issue(t, "otelcol", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := clientCA.issue(t, "kubefeed", x509.ExtKeyUsageClientAuth)
	tlsOnly := receiverTLS{certFile: cert, keyFile: key}
	pipes := []otlpPipeline{
		{"tls-grpc", otlp.ShapeK8sObjects, otlp.ProtocolGRPC, ""},
		{"tls-http", otlp.ShapeEntity, otlp.ProtocolHTTP, ""},
		{"mtls-grpc", otlp.ShapeEntity, otlp.ProtocolGRPC, ""},
		{"mtls-http", otlp.ShapeK8sObjects, otlp.ProtocolHTTP, ""},
	}
	col := startOtelcolTLS(t, map[string]receiverTLS{"tls-grpc": tlsOnly, "tls-http": tlsOnly,
		"mtls-grpc": {certFile: cert, keyFile: key, clientCAFile: clientCA.CAFile},
		"mtls-http": {certFile: cert, keyFile: key, clientCAFile: clientCA.CAFile}}, otlpPipelineNames(pipes)...)
	ns := namespace(t, "otlp-tls-untrusted", nil)
	addr := freeAddr(t)
	// fixed: the right CA for the tls-* sinks, a client certificate for
	// the mtls-* sinks.
	writeConfig := func(fixed bool) string {
		var sinksYAML strings.Builder
		for _, p := range pipes {
			block := fmt.Sprintf("caFile: '%s'", otherCA.CAFile)
			switch {
			case strings.HasPrefix(p.name, "tls-") && fixed:
				block = fmt.Sprintf("caFile: '%s'", serverCA.CAFile)
			case strings.HasPrefix(p.name, "mtls-") && fixed:
				block = fmt.Sprintf("caFile: '%s', certFile: '%s', keyFile: '%s'", serverCA.CAFile, clientCert, clientKey)
			case strings.HasPrefix(p.name, "mtls-"):
				block = fmt.Sprintf("caFile: '%s'", serverCA.CAFile)
			}
			fmt.Fprintf(&sinksYAML, "  - name: %s\n    otlp: {endpoint: '%s', protocol: %s, shape: %s, batch: 64, linger: 5ms, tls: {%s}}\n",
				p.name, col.endpoint(p.name, p.protocol), p.protocol, p.shape, block)
		}
		cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: otlp-test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
sinks:
  - name: file
    file: {path: %[2]s/events.jsonl}
%[3]scheckpoint:
  file: {path: %[2]s/checkpoint.db}
metrics: {address: '%[4]s'}
`, ns, dir, sinksYAML.String(), addr)
		path := filepath.Join(dir, "kubefeed.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	d := startDaemon(t, writeConfig(false))

	_, dyn := clients(t)
	ctx := context.Background()
	events := filepath.Join(dir, "events.jsonl")
	steps := []func() error{
		func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm("a", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm("b", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, "a", "application/merge-patch+json", []byte(`{"data":{"k":"w"}}`), metav1.PatchOptions{})
			return err
		},
		func() error { return dyn.Resource(configMaps).Namespace(ns).Delete(ctx, "b", metav1.DeleteOptions{}) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("change %d: %v", i+1, err)
		}
		waitLines(t, fmt.Sprintf("%d events in the file sink", i+1), func() bool { return len(readLines(t, events)) >= i+1 })
	}

	// Each sink fails its sends, retryably; the untrusted server's are
	// named for what is wrong. A receiver refusing a client without a
	// certificate does so after the client's TLS 1.3 handshake has
	// finished, so kubefeed may see only the connection it closed (broken
	// pipe, reset): there the test asks for the failure, not its words.
	why := map[string]string{
		"tls-grpc": "x509: certificate signed by unknown authority", "tls-http": "x509: certificate signed by unknown authority",
		"mtls-grpc": "", "mtls-http": "",
	}
	for _, p := range pipes {
		waitLines(t, p.name+"'s send failures", func() bool {
			return metricValue(t, scrape(t, addr), fmt.Sprintf(`kubefeed_send_failures_total{sink="%s"}`, p.name)) > 0
		})
	}
	logs := d.logs.String()
	for _, p := range pipes {
		found := false
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "send failed, retrying") && strings.Contains(l, `"sink": "`+p.name+`"`) && strings.Contains(l, why[p.name]) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no \"send failed, retrying\" line naming %q; kubefeed's log:\n%s", p.name, why[p.name], logs)
		}
	}
	m := scrape(t, addr)
	for _, p := range pipes {
		if v := metricValue(t, m, fmt.Sprintf(`kubefeed_events_dropped_total{sink="%s"}`, p.name)); v > 0 {
			t.Errorf("%s: %v events dropped", p.name, v)
		}
		if v := metricValue(t, m, fmt.Sprintf(`kubefeed_queue_oldest_seconds{sink="%s"}`, p.name)); v <= 0 {
			t.Errorf("%s: oldest undelivered change %vs old, want the changes held", p.name, v)
		}
		if n := len(col.records(t, p.name)); n != 0 {
			t.Errorf("%s: the Collector got %d records from a sink that does not trust it or that it does not trust", p.name, n)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	d.kill()
	d = startDaemon(t, writeConfig(true))
	for _, p := range pipes {
		t.Run(p.name, func(t *testing.T) {
			read := func() [][]byte { return col.eventLines(t, p.name) }
			// b, created and deleted while the sink failed, is missing from
			// the rebuilt state whether or not its deletion arrived (its
			// only event, level-based): wait for that too.
			waitLines(t, "the deletion record of b", func() bool { return deletedUIDs(t, read()) == 1 })
			eventuallyRebuilds(t, read, func() map[string]map[string]any {
				return listed(t, []string{ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"})
			})
		})
	}
	if t.Failed() {
		t.Logf("kubefeed's log after the restart:\n%s", d.logs.String())
	}
}
