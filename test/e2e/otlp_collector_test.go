package e2e

// A real OpenTelemetry Collector (test/tools/otelcol, built by
// test/tools/build.sh from the Go module proxy: the OTLP receiver and the
// file exporter of v0.152.0) for the OTLP sink's tests. Each pipeline is an
// OTLP receiver of its own (gRPC and HTTP on loopback ports) writing to a
// file of its own, so that a test tells its sinks apart by file.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/kubefeed/kubefeed/sinks/otlp"
	"github.com/kubefeed/kubefeed/test/cluster"
)

// otelcol is a Collector process and its configuration.
type otelcol struct {
	t         *testing.T
	bin, dir  string
	cfgPath   string
	grpc, web map[string]int // pipeline → OTLP gRPC and HTTP ports
	tls       map[string]receiverTLS
	cmd       *exec.Cmd
	logs      *lockedBuffer
	exited    chan struct{}
}

// lockedBuffer is a bytes.Buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// receiverTLS is the server TLS of a pipeline's OTLP receiver (gRPC and
// HTTP alike): its certificate and key, and, for mTLS, the CA that must
// have signed the client's certificate.
type receiverTLS struct{ certFile, keyFile, clientCAFile string }

// yaml is the receiver's tls setting, or nothing for plaintext.
func (r receiverTLS) yaml() string {
	if r.certFile == "" {
		return ""
	}
	s := fmt.Sprintf(", tls: {cert_file: '%s', key_file: '%s'", r.certFile, r.keyFile)
	if r.clientCAFile != "" {
		s += fmt.Sprintf(", client_ca_file: '%s'", r.clientCAFile)
	}
	return s + "}"
}

// startOtelcol starts a Collector with one pipeline per name: OTLP in,
// the file exporter out to <dir>/<name>.jsonl (appended, so that a
// restarted Collector keeps what the earlier one wrote).
func startOtelcol(t *testing.T, pipelines ...string) *otelcol {
	t.Helper()
	return startOtelcolTLS(t, nil, pipelines...)
}

// startOtelcolTLS is startOtelcol with TLS on the receivers of the
// pipelines tlsFor names.
func startOtelcolTLS(t *testing.T, tlsFor map[string]receiverTLS, pipelines ...string) *otelcol {
	t.Helper()
	bin, err := cluster.Binary("otelcol")
	if err != nil {
		t.Fatal(err)
	}
	c := &otelcol{t: t, bin: bin, dir: t.TempDir(), grpc: map[string]int{}, web: map[string]int{}, tls: tlsFor}
	var recv, exp, pipes strings.Builder
	for _, p := range pipelines {
		c.grpc[p], c.web[p] = freePort(t), freePort(t)
		tl := tlsFor[p].yaml()
		fmt.Fprintf(&recv, "  otlp/%s:\n    protocols:\n      grpc: {endpoint: '127.0.0.1:%d'%s}\n      http: {endpoint: '127.0.0.1:%d'%s}\n", p, c.grpc[p], tl, c.web[p], tl)
		fmt.Fprintf(&exp, "  file/%s: {path: '%s', append: true, flush_interval: 100ms}\n", p, c.file(p))
		fmt.Fprintf(&pipes, "    logs/%s: {receivers: [otlp/%s], exporters: [file/%s]}\n", p, p, p)
	}
	cfg := "receivers:\n" + recv.String() + "exporters:\n" + exp.String() +
		"service:\n  telemetry:\n    metrics: {level: none}\n    logs: {level: warn}\n  pipelines:\n" + pipes.String()
	c.cfgPath = filepath.Join(c.dir, "otelcol.yaml")
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("otelcol logs:\n%s", c.logs.String())
		}
	})
	return c
}

func (c *otelcol) file(pipeline string) string { return filepath.Join(c.dir, pipeline+".jsonl") }

// restart starts the process and waits until every receiver listens.
func (c *otelcol) restart() error {
	c.logs = &lockedBuffer{}
	c.cmd = exec.Command(c.bin, "--config", "file:"+c.cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(c.cmd, c.exited)
	deadline := time.Now().Add(60 * time.Second)
	for _, ports := range []map[string]int{c.grpc, c.web} {
		for _, port := range ports {
			for {
				conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
				if err == nil {
					conn.Close()
					break
				}
				select {
				case <-c.exited:
					return fmt.Errorf("otelcol exited:\n%s", c.logs.String())
				default:
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("otelcol does not listen on %d after 60s:\n%s", port, c.logs.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return nil
}

// stop ends the process gracefully (SIGTERM: the file exporter flushes)
// and waits for it.
func (c *otelcol) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// endpoint is what an otlp sink block names for pipeline p over protocol:
// https:// for HTTP to a TLS receiver; host:port for gRPC, which a tls
// block makes TLS.
func (c *otelcol) endpoint(p, protocol string) string {
	if protocol == otlp.ProtocolHTTP {
		scheme := "http"
		if c.tls[p].certFile != "" {
			scheme = "https"
		}
		return fmt.Sprintf("%s://127.0.0.1:%d", scheme, c.web[p])
	}
	return fmt.Sprintf("127.0.0.1:%d", c.grpc[p])
}

// record is one log record the file exporter wrote, with its resource and
// scope.
type record struct {
	resource map[string]any
	scope    string
	lr       plog.LogRecord
}

func (r record) attr(k string) any {
	v, ok := r.lr.Attributes().Get(k)
	if !ok {
		return nil
	}
	return v.AsRaw()
}

func (r record) str(k string) string { s, _ := r.attr(k).(string); return s }

// records decodes the file a pipeline wrote, one ExportLogsServiceRequest
// per line, with the Collector's own plog JSON unmarshaler.
func (c *otelcol) records(t *testing.T, pipeline string) []record {
	t.Helper()
	f, err := os.Open(c.file(pipeline))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	var u plog.JSONUnmarshaler
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		ld, err := u.UnmarshalLogs(sc.Bytes())
		if err != nil {
			// The Collector may be writing the line now: read it next time.
			break
		}
		for _, rl := range ld.ResourceLogs().All() {
			res := rl.Resource().Attributes().AsRaw()
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					out = append(out, record{resource: res, scope: sl.Scope().Name(), lr: lr})
				}
			}
		}
	}
	return out
}

// asEvent turns a record back into the CloudEvent fields the e2e consumer
// (rebuild_test.go) reads, so that a feed exported over OTLP is checked by
// the same rules as the others: the object from the body (k8sobjects:
// body.object), the patch, versions and flags from kubefeed's attributes.
func (r record) asEvent(t *testing.T) []byte {
	t.Helper()
	body := r.lr.Body().AsRaw()
	if m, ok := body.(map[string]any); ok && r.scope == otlp.ScopeK8sObjects {
		body = m["object"]
	}
	typ := r.str(otlp.AttrEventType)
	e := map[string]any{"type": typ, "id": r.str(otlp.AttrEventID), "subject": r.str(otlp.AttrEventSubject),
		"resourceversion": r.str(otlp.AttrResourceVersion)}
	data := map[string]any{}
	if typ == "io.kubefeed.gap" {
		data["reason"] = r.str(otlp.AttrGapReason)
	} else {
		obj, _ := body.(map[string]any)
		md, _ := obj["metadata"].(map[string]any)
		e["uid"] = md["uid"]
		data["object"] = obj
		data["patch"] = r.attr(otlp.AttrPatch)
		data["changedPaths"] = r.attr(otlp.AttrChangedPaths)
		data["previousResourceVersion"] = r.str(otlp.AttrPreviousResourceVersion)
		data["recovered"] = r.attr(otlp.AttrRecovered)
	}
	e["data"] = data
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventLines are a pipeline's records as event lines, in file order.
func (c *otelcol) eventLines(t *testing.T, pipeline string) [][]byte {
	var out [][]byte
	for _, r := range c.records(t, pipeline) {
		out = append(out, r.asEvent(t))
	}
	return out
}

// testCA is a throwaway certificate authority of a test.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	dir    string
	CAFile string // its certificate, PEM
}

// newTestCA makes a CA and writes its certificate to dir/<name>-ca.pem.
func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, dir: dir, CAFile: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.CAFile, "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for 127.0.0.1 and localhost, for a server or
// a client, and writes it and its key to dir/<name>.pem and
// dir/<name>-key.pem.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
