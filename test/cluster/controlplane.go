package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/test/freeport"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminToken is the bearer token of the admin user (system:masters).
const AdminToken = "kubefeed-admin-token"

// Options configure a control plane. The zero value is a normal API server
// with its watch cache on.
type Options struct {
	// Dir holds data, keys and logs; empty means a new temp dir.
	Dir string
	// DisableWatchCache makes watches go to etcd, so that a watch from a
	// compacted resourceVersion gets 410 Gone.
	DisableWatchCache bool
	// CompactionInterval is the API server's etcd compaction interval (0: the
	// API server's default of 5m).
	CompactionInterval time.Duration
	// Detach lets the processes outlive this one (the developer cluster);
	// they are stopped with KillPIDFiles(Dir).
	Detach bool
	// FeatureGates is passed as --feature-gates to every kube-apiserver of
	// the control plane (not to etcd), e.g. "ShardedListAndWatch=true"; empty
	// passes none. It is not checked here: a gate the API server does not
	// know makes Start fail with the API server's own error and its log tail.
	FeatureGates string
	// AuditLog makes every API server of the control plane write an audit
	// log (APIServer.AuditLog) of every request at level Metadata: who
	// (with impersonatedUser when a client impersonates one), verb,
	// objectRef and requestURI with its query, for tests that must see
	// what a client asked for.
	AuditLog bool
}

// auditPolicy logs every request once it completed (and a watch once
// its response started), without bodies.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`

// ControlPlane is one etcd with one or more API servers on it.
type ControlPlane struct {
	Dir     string
	EtcdURL string
	opts    Options
	etcd    *process
	servers []*APIServer
}

// APIServer is one kube-apiserver process.
type APIServer struct {
	Port int
	// Kubeconfig is the path of a kubeconfig file for the admin user.
	Kubeconfig string
	// AuditLog is the path of the API server's audit log, one JSON
	// audit.k8s.io/v1 Event a line ("" unless Options.AuditLog).
	AuditLog string
	proc     *process
	cp       *ControlPlane
}

// StartT starts a control plane for a test and stops it on t.Cleanup.
func StartT(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	cp, err := Start(opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(cp.Stop)
	return cp
}

// Start starts etcd and one API server and waits until both are ready.
func Start(opts Options) (*ControlPlane, error) {
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "kubefeed-cp-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: opts.Dir, opts: opts}
	if err := cp.writeSecrets(); err != nil {
		return nil, err
	}
	if err := cp.startEtcd(); err != nil {
		cp.Stop()
		return nil, err
	}
	if _, err := cp.AddAPIServer(); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// Stop kills every process of the control plane.
func (cp *ControlPlane) Stop() {
	for _, s := range cp.servers {
		s.proc.kill()
	}
	if cp.etcd != nil {
		cp.etcd.kill()
	}
}

// APIServer returns the first API server.
func (cp *ControlPlane) APIServer() *APIServer { return cp.servers[0] }

// Config is a rest.Config for the admin user on the first API server.
func (cp *ControlPlane) Config() *rest.Config { return cp.servers[0].Config() }

// Kubeconfig is the admin kubeconfig path of the first API server.
func (cp *ControlPlane) Kubeconfig() string { return cp.servers[0].Kubeconfig }

func (cp *ControlPlane) writeSecrets() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service account key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(cp.Dir, "sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	tokens := AdminToken + ",admin,admin-uid,\"system:masters\"\n"
	return os.WriteFile(filepath.Join(cp.Dir, "tokens.csv"), []byte(tokens), 0o600)
}

func (cp *ControlPlane) startEtcd() error {
	bin, err := Binary("etcd")
	if err != nil {
		return err
	}
	clientPort, err := freeport.Port()
	if err != nil {
		return err
	}
	peerPort, err := freeport.Port()
	if err != nil {
		return err
	}
	cp.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	cp.etcd = &process{
		name: "etcd", path: bin, logPath: filepath.Join(cp.Dir, "etcd.log"), detach: cp.opts.Detach,
		args: []string{
			"--name=default",
			"--data-dir=" + filepath.Join(cp.Dir, "etcd-data"),
			"--listen-client-urls=" + cp.EtcdURL,
			"--advertise-client-urls=" + cp.EtcdURL,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		},
	}
	if err := cp.etcd.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return waitReady(ctx, cp.etcd, http.DefaultClient, cp.EtcdURL+"/health", "")
}

// AddAPIServer starts another API server on the same etcd (for tests that
// change the cluster while the first one is down).
func (cp *ControlPlane) AddAPIServer() (*APIServer, error) {
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	s := &APIServer{Port: port, cp: cp}
	n := len(cp.servers)
	s.Kubeconfig = filepath.Join(cp.Dir, fmt.Sprintf("kubeconfig-%d", n))
	if n == 0 {
		s.Kubeconfig = filepath.Join(cp.Dir, "kubeconfig")
	}
	bin, err := Binary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	args := []string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(cp.Dir, fmt.Sprintf("certs-%d", n)),
		"--token-auth-file=" + filepath.Join(cp.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(cp.Dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(cp.Dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--profiling=false",
		"--v=0",
	}
	if cp.opts.DisableWatchCache {
		args = append(args, "--watch-cache=false")
	}
	if cp.opts.CompactionInterval > 0 {
		args = append(args, "--etcd-compaction-interval="+cp.opts.CompactionInterval.String())
	}
	if cp.opts.FeatureGates != "" {
		args = append(args, "--feature-gates="+cp.opts.FeatureGates)
	}
	if cp.opts.AuditLog {
		policy := filepath.Join(cp.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return nil, fmt.Errorf("audit policy: %w", err)
		}
		s.AuditLog = filepath.Join(cp.Dir, fmt.Sprintf("kube-apiserver-%d-audit.log", n))
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+s.AuditLog)
	}
	s.proc = &process{
		name: fmt.Sprintf("kube-apiserver-%d", n), path: bin, args: args, detach: cp.opts.Detach,
		logPath: filepath.Join(cp.Dir, fmt.Sprintf("kube-apiserver-%d.log", n)),
	}
	cp.servers = append(cp.servers, s)
	if err := s.startAndWait(); err != nil {
		return nil, err
	}
	if err := s.writeKubeconfig(); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the API server's https URL.
func (s *APIServer) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.Port) }

// Config is a rest.Config for the admin user.
func (s *APIServer) Config() *rest.Config {
	return &rest.Config{
		Host:            s.URL(),
		BearerToken:     AdminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             500,
		Burst:           1000,
	}
}

// Clientset returns a typed admin client.
func (s *APIServer) Clientset() *kubernetes.Clientset {
	return kubernetes.NewForConfigOrDie(s.Config())
}

// Kill SIGKILLs the API server: clients see a hard outage.
func (s *APIServer) Kill() { s.proc.kill() }

// Start starts a killed API server again on the same port and waits for it.
func (s *APIServer) Start() error { return s.startAndWait() }

// RestartAPIServer SIGKILLs the first API server and starts it again on the
// same port.
func (cp *ControlPlane) RestartAPIServer() error {
	s := cp.servers[0]
	s.Kill()
	return s.Start()
}

func (s *APIServer) startAndWait() error {
	if err := s.proc.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local test server
	}}
	return waitReady(ctx, s.proc, hc, s.URL()+"/readyz", AdminToken)
}

func (s *APIServer) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: s.URL(), InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: AdminToken}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, s.Kubeconfig)
}

// waitReady polls url until it answers 200, the process exits, or ctx ends.
func waitReady(ctx context.Context, p *process, hc *http.Client, url, token string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready; log:\n%s", p.name, p.logTail())
		}
		select {
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("%s not ready at %s: %w; log:\n%s", p.name, url, ctx.Err(), p.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Compact compacts etcd at its current revision through etcd's JSON gateway,
// so that resourceVersions older than now are gone.
func (cp *ControlPlane) Compact(ctx context.Context) (int64, error) {
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// A range over an empty key range returns only the header.
	if err := etcdPost(ctx, cp.EtcdURL+"/v3/kv/range", `{"key":"AA=="}`, &rng); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", rng.Header.Revision, err)
	}
	body := fmt.Sprintf(`{"revision":%d,"physical":true}`, rev)
	if err := etcdPost(ctx, cp.EtcdURL+"/v3/kv/compaction", body, nil); err != nil {
		return 0, err
	}
	return rev, nil
}

func etcdPost(ctx context.Context, url, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", url, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("etcd %s: %w", url, err)
		}
	}
	return nil
}
