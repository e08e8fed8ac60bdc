package natstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/test/freeport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is n real nats-server processes on loopback that form one
// JetStream cluster: each node has its own client, route and monitoring
// port and its own store under the test's temp dir. A node can be
// SIGKILLed and restarted on the same ports and store, or frozen
// (SIGSTOP) and thawed. The binary is nats-server from
// $KUBEFEED_BIN_DIR, which test/tools/build.sh builds at the version
// go.mod requires.
type Cluster struct {
	t     testing.TB
	bin   string
	nodes []*clusterNode
}

// clusterNode is one server of a Cluster.
type clusterNode struct {
	name                      string
	port, routePort, httpPort int
	dir, conf, logPath        string
	mu                        sync.Mutex
	cmd                       *exec.Cmd
	done                      chan struct{} // closed when cmd has been reaped
	paused                    bool
}

// clusterName names the cluster the nodes form (JetStream needs one).
const clusterName = "kubefeed-test"

// StartCluster starts n nodes, waits until they agree on a JetStream meta
// leader and every node reports itself healthy, and stops them all when
// the test ends (their logs are printed when it failed).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := clusterBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: bin}
	root := t.TempDir()
	for i := 0; i < n; i++ {
		nd := &clusterNode{name: fmt.Sprintf("n%d", i), dir: filepath.Join(root, fmt.Sprintf("n%d", i))}
		nd.conf = filepath.Join(nd.dir, "nats.conf")
		nd.logPath = filepath.Join(nd.dir, "nats.log")
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(c.stop)
	// A free port is only free when asked: another process (a parallel
	// test's server) may take it before the node binds it. Then the
	// nodes start again on other ports, a few times.
	for attempt := 1; ; attempt++ {
		err := c.startOnFreePorts()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again on other ports: %v", err)
		for i := range c.nodes {
			c.Kill(i)
		}
	}
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// errPortTaken: a node exited at start because a port it was given was
// taken meanwhile.
var errPortTaken = errors.New("a port was taken before the node bound it")

// startOnFreePorts gives every node free ports, writes the configs and
// starts the nodes.
func (c *Cluster) startOnFreePorts() error {
	for _, nd := range c.nodes {
		for _, p := range []*int{&nd.port, &nd.routePort, &nd.httpPort} {
			var err error
			if *p, err = freeport.Port(); err != nil {
				return err
			}
		}
	}
	for _, nd := range c.nodes {
		// A store an attempt before left behind starts empty again.
		if err := os.RemoveAll(filepath.Join(nd.dir, "store")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(nd.dir, "store"), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(nd.conf, []byte(c.config(nd)), 0o600); err != nil {
			return err
		}
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			return err
		}
	}
	return nil
}

// clusterBinary is nats-server in $KUBEFEED_BIN_DIR or, when that is not
// set, in the directory test/tools/build.sh --print-dir names.
func clusterBinary() (string, error) {
	dir := os.Getenv("KUBEFEED_BIN_DIR")
	from := "KUBEFEED_BIN_DIR"
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "tools", "build.sh")
		out, err := exec.Command("bash", script, "--print-dir").Output()
		if err != nil {
			return "", fmt.Errorf("nats-server: KUBEFEED_BIN_DIR is not set and %s --print-dir failed: %w", script, err)
		}
		dir, from = strings.TrimSpace(string(out)), "test/tools/build.sh --print-dir"
	}
	p := filepath.Join(dir, "nats-server")
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("no nats-server in %s (from %s): run test/tools/build.sh, which builds it at the version go.mod requires, "+
			"and set KUBEFEED_BIN_DIR=$(bash test/tools/build.sh --print-dir)", dir, from)
	}
	return p, nil
}

// config is a node's configuration file.
func (c *Cluster) config(nd *clusterNode) string {
	routes := make([]string, 0, len(c.nodes))
	for _, o := range c.nodes {
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort)))
	}
	return fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, nd.name, nd.port, nd.httpPort, filepath.Join(nd.dir, "store"), clusterName, nd.routePort, strings.Join(routes, ", "))
}

// start runs node i's process and waits until it accepts clients.
func (c *Cluster) start(i int) error {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.done != nil {
		select {
		case <-nd.done:
		default:
			return fmt.Errorf("nats-server %s is running", nd.name)
		}
	}
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== kubefeed test: starting %s at %s\n", nd.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, "-c", nd.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start nats-server %s: %w", nd.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.cmd, nd.done, nd.paused = cmd, done, false
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-done:
			tail := clusterLogTail(nd.logPath, 3000)
			if strings.Contains(tail, "address already in use") {
				return fmt.Errorf("nats-server %s exited at start: %w:\n%s", nd.name, errPortTaken, tail)
			}
			return fmt.Errorf("nats-server %s exited at start:\n%s", nd.name, tail)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s does not accept clients on port %d after 30s:\n%s", nd.name, nd.port, clusterLogTail(nd.logPath, 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// N is the number of nodes.
func (c *Cluster) N() int { return len(c.nodes) }

// URLs are the client URLs of the nodes, in node order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.nodes))
	for i := range c.nodes {
		out[i] = c.NodeURL(i)
	}
	return out
}

// URL is the nodes' client URLs joined by commas, as nats.Connect and
// ReadStream take them.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// NodeURL is node i's client URL.
func (c *Cluster) NodeURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].port) }

// Name is node i's server name (n0, n1, …), as stream and meta leaders
// are reported.
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index is the node with server name name, or -1.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// Kill SIGKILLs node i and waits until it is gone; its store stays.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return
	}
	_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-nd.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("nats-server %s still running 10s after SIGKILL", nd.name)
	}
	nd.paused = false
}

// Restart starts node i again, on the same ports and store, after Kill
// (it kills it first if it still runs), and waits until it accepts
// clients; WaitHealthy waits until it has caught up.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

// Pause freezes node i (SIGSTOP): its connections stay open but it
// answers nothing, like a node that hangs.
func (c *Cluster) Pause(i int) { c.signal(i, syscall.SIGSTOP, true) }

// Resume thaws a paused node (SIGCONT).
func (c *Cluster) Resume(i int) { c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) {
	c.t.Helper()
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		c.t.Fatalf("nats-server %s was never started", nd.name)
	}
	if err := syscall.Kill(-nd.cmd.Process.Pid, sig); err != nil {
		c.t.Fatalf("signal %v to nats-server %s: %v", sig, nd.name, err)
	}
	nd.paused = paused
}

// running reports whether node i's process is alive and not paused.
func (c *Cluster) running(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.done == nil || nd.paused {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// clusterJSZ is the part of a node's /jsz the cluster reads.
type clusterJSZ struct {
	Meta *struct {
		Leader      string `json:"leader"`
		ClusterSize int    `json:"cluster_size"`
	} `json:"meta_cluster"`
}

// MetaLeader is the JetStream meta leader every running node reports
// (an error when they do not agree or have none).
func (c *Cluster) MetaLeader() (string, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	leader := ""
	for i, nd := range c.nodes {
		if !c.running(i) {
			continue
		}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", nd.httpPort))
		if err != nil {
			return "", fmt.Errorf("%s: %w", nd.name, err)
		}
		var j clusterJSZ
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		switch {
		case err != nil:
			return "", fmt.Errorf("%s /jsz: %w", nd.name, err)
		case j.Meta == nil || j.Meta.Leader == "":
			return "", fmt.Errorf("%s has no meta leader", nd.name)
		case leader != "" && j.Meta.Leader != leader:
			return "", fmt.Errorf("%s says the meta leader is %s, another node %s", nd.name, j.Meta.Leader, leader)
		}
		leader = j.Meta.Leader
	}
	if leader == "" {
		return "", errors.New("no node is running")
	}
	return leader, nil
}

// WaitHealthy waits until the running nodes agree on a meta leader and
// each answers /healthz with 200 (JetStream enabled, its streams and
// consumers current).
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.MetaLeader()
		for i, nd := range c.nodes {
			if err != nil {
				break
			}
			if !c.running(i) {
				continue
			}
			resp, herr := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", nd.httpPort))
			if herr != nil {
				err = fmt.Errorf("%s /healthz: %w", nd.name, herr)
				break
			}
			body, _ := clusterReadAll(resp)
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s /healthz: %s %s", nd.name, resp.Status, bytes.TrimSpace(body))
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats cluster not healthy after %v: %w\n%s", timeout, err, c.logs(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clusterReadAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(resp.Body)
	return b.Bytes(), err
}

// StreamLeader is the node that leads stream (its index), as the cluster
// reports it through any running node.
func (c *Cluster) StreamLeader(ctx context.Context, stream string) (int, error) {
	nc, err := nats.Connect(c.URL())
	if err != nil {
		return -1, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1, err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return -1, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return -1, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return -1, fmt.Errorf("stream %s has no leader", stream)
	}
	i := c.Index(info.Cluster.Leader)
	if i < 0 {
		return -1, fmt.Errorf("stream %s led by %q, not a node of the cluster", stream, info.Cluster.Leader)
	}
	return i, nil
}

// logs is the tail of every node's log.
func (c *Cluster) logs(n int) string {
	var b strings.Builder
	for _, nd := range c.nodes {
		fmt.Fprintf(&b, "--- nats-server %s (%s):\n%s\n", nd.name, nd.logPath, clusterLogTail(nd.logPath, n))
	}
	return b.String()
}

func clusterLogTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}

// stop kills every node (thawing paused ones is not needed: SIGKILL ends
// a stopped process too).
func (c *Cluster) stop() {
	for i := range c.nodes {
		c.Kill(i)
	}
	if c.t.Failed() {
		c.t.Logf("nats cluster logs:\n%s", c.logs(4000))
	}
}

// ClientNames are the names of the client connections node i holds (its
// /connz), so a test can tell which node a process is connected to.
func (c *Cluster) ClientNames(i int) ([]string, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=1024", c.nodes[i].httpPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return nil, fmt.Errorf("%s /connz: %w", c.nodes[i].name, err)
	}
	out := make([]string, len(cz.Conns))
	for j, cn := range cz.Conns {
		out[j] = cn.Name
	}
	return out, nil
}

// NodeOfClient is the node that holds a client connection named name, or
// -1 when no running node does.
func (c *Cluster) NodeOfClient(name string) int {
	for i := range c.nodes {
		if !c.running(i) {
			continue
		}
		names, err := c.ClientNames(i)
		if err != nil {
			continue
		}
		for _, n := range names {
			if n == name {
				return i
			}
		}
	}
	return -1
}

// MoveStreamLeader makes node to the leader of stream: the leader steps
// down with to as the preferred successor, until to leads.
func (c *Cluster) MoveStreamLeader(ctx context.Context, stream string, to int) error {
	nc, err := nats.Connect(c.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	req, _ := json.Marshal(map[string]any{"placement": map[string]any{"preferred": c.nodes[to].name}})
	for {
		now, err := c.StreamLeader(ctx, stream)
		if err == nil && now == to {
			return nil
		}
		if err == nil {
			_, err = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, req)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s: leader not moved to %s: %w (last: %v)", stream, c.nodes[to].name, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
