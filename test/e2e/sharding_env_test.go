package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// shardEnv is one sharded feed under test: the API server its replicas
// watch, the watched namespace, the namespace of the Leases, the NATS
// server of the sink and checkpoint, and the config the replicas share.
type shardEnv struct {
	api     *cluster.APIServer
	gate    bool // the API server applies shardSelector
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	ns, lns string
	nats    *natstest.Server
	cfg     string
	n       int // the shard count of cfg
}

func newShardEnv(t *testing.T, api *cluster.APIServer, name string, gate bool) *shardEnv {
	t.Helper()
	e := &shardEnv{api: api, gate: gate, cs: api.Clientset(), dyn: dynamic.NewForConfigOrDie(api.Config()), n: shards}
	// An earlier run in this process (go test -count) left name: take
	// name-2, name-3, ….
	for try := 1; e.ns == ""; try++ {
		ns := name
		if try > 1 {
			ns = fmt.Sprintf("%s-%d", name, try)
		}
		_, err := e.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		switch {
		case err == nil:
			e.ns, e.lns = ns, ns+"-lease"
		case !apierrors.IsAlreadyExists(err) || try == 20:
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	if _, err := e.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.lns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", e.lns, err)
	}
	e.nats = natstest.StartT(t, natstest.Options{})
	e.cfg = writeFile(t, "c.yaml", e.config())
	return e
}

// config is the replicas' config, with e.n shards.
func (e *shardEnv) config() string {
	return fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[2]s]}
sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[3]s, name: kubefeed, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms}
sharding: {shards: %[4]d}
`, e.nats.URL(), e.ns, e.lns, e.n)
}

// reshard changes the shard count of the config that replicas started
// from now on read.
func (e *shardEnv) reshard(t *testing.T, n int) {
	t.Helper()
	e.n = n
	if err := os.WriteFile(e.cfg, []byte(e.config()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// shardReplica is one `kubefeed run` of a sharded feed.
type shardReplica struct {
	*kfProc
	name string // its API user is "kubefeed-<name>" (impersonated)
	id   string // its Lease identity
}

// start starts a replica. Its kubeconfig impersonates the user
// kubefeed-<name> (in system:masters), so that the audit log tells its
// requests from the other replicas'.
func (e *shardEnv) start(t *testing.T, name string) *shardReplica {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: e.api.URL(), InsecureSkipTLSVerify: true}
	kc.AuthInfos["replica"] = &clientcmdapi.AuthInfo{Token: cluster.AdminToken, Impersonate: "kubefeed-" + name, ImpersonateGroups: []string{"system:masters"}}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "replica"}
	kc.CurrentContext = "local"
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		t.Fatal(err)
	}
	// startKubefeed, with this kubeconfig.
	p := &kfProc{logs: &syncBuffer{}, metrics: freeAddr(t), done: make(chan struct{})}
	p.cmd = exec.Command(kubefeedBinary(t), "run", "--config", e.cfg, "--kubeconfig", kcPath,
		"--log-format", "console", "--metrics-address", p.metrics)
	p.cmd.Stderr, p.cmd.Stdout = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("replica %s (pid %d) log:\n%s", name, p.cmd.Process.Pid, p.logs.String())
		}
	})
	r := &shardReplica{kfProc: p, name: name}
	p.waitLogContains(t, "sharded: joining the replicas")
	m := identityRE.FindStringSubmatch(p.logs.String())
	if m == nil {
		t.Fatalf("replica %s logged no identity:\n%s", name, p.logs.String())
	}
	r.id = m[1]
	return r
}

func (r *shardReplica) kill(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Kill()
	if code := r.waitExit(10 * time.Second); code == 0 {
		t.Fatalf("%s survived SIGKILL", r.name)
	}
}

// holders returns each shard Lease's holderIdentity ("" when it does not
// exist or nobody holds it).
func (e *shardEnv) holders(t *testing.T) []string {
	t.Helper()
	out := make([]string, e.n)
	for i := range e.n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := e.cs.CoordinationV1().Leases(e.lns).Get(ctx, fmt.Sprintf("kubefeed-shard-%d", i), metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			t.Fatalf("shard Lease %d: %v", i, err)
		case l.Spec.HolderIdentity != nil:
			out[i] = *l.Spec.HolderIdentity
		}
	}
	return out
}

// members returns the live identities of the members Lease.
func (e *shardEnv) members(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := e.cs.CoordinationV1().Leases(e.lns).Get(ctx, "kubefeed-members", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("members Lease: %v", err)
	}
	var out []string
	for k, v := range l.Annotations {
		if _, id, ok := strings.Cut(v, " "); ok && strings.HasPrefix(k, "members.kubefeed.io/") {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// waitBalanced waits until the replicas rs hold every shard between them,
// evenly (by the shard Leases), and each one's /readyz is 200 and names
// exactly the shards it holds (every held shard's pipeline is synced and
// delivering). It returns the shards each identity holds.
func (e *shardEnv) waitBalanced(t *testing.T, when string, rs ...*shardReplica) map[string][]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		holders := e.holders(t)
		held := map[string][]int{}
		for i, h := range holders {
			held[h] = append(held[h], i)
		}
		var problems []string
		for _, r := range rs {
			if r.exited() {
				t.Fatalf("%s: replica %s exited (%v):\n%s", when, r.name, r.waitErr, r.logs.String())
			}
			n := len(held[r.id])
			if n < e.n/len(rs) || n > (e.n+len(rs)-1)/len(rs) {
				problems = append(problems, fmt.Sprintf("%s holds %v", r.name, held[r.id]))
			}
			want := "sharded: holding no shard"
			if n > 0 {
				want = "sharded: holding shards " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(held[r.id])), ","), "[]")
			}
			status, body := "", ""
			if resp, err := hc.Get("http://" + r.metrics + "/readyz"); err != nil {
				status = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				status, body = resp.Status, strings.TrimSpace(string(b))
			}
			if status != "200 OK" || body != want {
				problems = append(problems, fmt.Sprintf("%s /readyz %s %q, want %q", r.name, status, body, want))
			}
		}
		if len(problems) == 0 {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: shards not balanced over %d replicas after 60s: holders %v; %s", when, len(rs), holders, strings.Join(problems, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// onlyMoved checks that a rebalance (when) moved shards from the replicas
// in from to those in to only, the others keeping theirs: each shard stays
// where it is unless its owner left or the balance needs it elsewhere.
// before and after are waitBalanced's results.
func onlyMoved(t *testing.T, when string, before, after map[string][]int, from, to []*shardReplica) {
	t.Helper()
	name := map[string]string{}
	for _, r := range append(append([]*shardReplica(nil), from...), to...) {
		name[r.id] = r.name
	}
	owner := func(held map[string][]int, i int) string {
		for id, is := range held {
			if slices.Contains(is, i) {
				return id
			}
		}
		return ""
	}
	in := func(rs []*shardReplica, id string) bool {
		return slices.ContainsFunc(rs, func(r *shardReplica) bool { return r.id == id })
	}
	for i := range shards {
		was, is := owner(before, i), owner(after, i)
		if was != is && (!in(from, was) || !in(to, is)) {
			t.Errorf("%s moved shard %d from %s to %s; want moves from %v to %v only", when, i, name[was], name[is], names(from), names(to))
		}
	}
}

func names(rs []*shardReplica) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.name
	}
	return out
}

// shardLoad is the writers of a sharding test.
type shardLoad struct {
	ops  atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

// startLoad starts 3 writers that make random creates, updates and deletes
// of their own ConfigMaps (w<k>-0…w<k>-14, those left by an earlier load
// included) until finish: names are deleted and created again, so that
// the incarnations of a name fall into different shards.
func (e *shardEnv) startLoad(t *testing.T, seed int64) *shardLoad {
	l := &shardLoad{stop: make(chan struct{})}
	for k := range 3 {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			ctx := context.Background()
			cms := e.dyn.Resource(configMaps).Namespace(e.ns)
			r := rand.New(rand.NewSource(seed*10 + int64(k)))
			live := map[string]*unstructured.Unstructured{}
			have, err := cms.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Errorf("writer %d: %v", k, err)
				return
			}
			for _, o := range have.Items {
				if strings.HasPrefix(o.GetName(), fmt.Sprintf("w%d-", k)) {
					live[o.GetName()] = &o
				}
			}
			for op := 0; ; op++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", k, r.Intn(15))
				o, exists := live[name]
				var err error
				switch {
				case !exists:
					live[name], err = cms.Create(ctx, cm(name, map[string]string{"gen": fmt.Sprint(op)}, map[string]any{"n": fmt.Sprint(op)}), metav1.CreateOptions{})
				case r.Intn(4) == 0:
					delete(live, name)
					err = cms.Delete(ctx, name, metav1.DeleteOptions{})
				default:
					o.Object["data"] = map[string]any{"n": fmt.Sprint(op), fmt.Sprintf("k%d", r.Intn(3)): strings.Repeat("v", r.Intn(100))}
					o.SetLabels(map[string]string{"gen": fmt.Sprint(op)})
					live[name], err = cms.Update(ctx, o, metav1.UpdateOptions{})
				}
				if err != nil {
					t.Errorf("writer %d, op %d on %s: %v", k, op, name, err)
					return
				}
				l.ops.Add(1)
			}
		}()
	}
	return l
}

// finish stops the writers and returns how many changes they made.
func (l *shardLoad) finish(t *testing.T) int64 {
	close(l.stop)
	l.done.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return l.ops.Load()
}
