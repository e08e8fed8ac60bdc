package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	kfconsumer "github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// Issue 23, end to end: sharded kubefeed processes (sharding.shards: 6,
// JetStream sink and checkpoint) against a real API server and a real
// nats-server, under a load of random ConfigMap changes, while replicas
// die, join and leave. Each test runs twice: against an API server with
// the ShardedListAndWatch feature gate (a second control plane with an
// audit log, which applies each shard's shardSelector) and against the
// package's own, without it (which ignores the selector, so that every
// shard filters client-side). Each run ends with the same checks
// (checkShardedFeed): the stream, rebuilt by package consumer, equals a
// LIST; each uid's events are in resourceVersion order and no id is
// stored twice; `kubefeed verify` exits 0.

// shards is the shard count of the sharding tests.
const shards = 6

// Three replicas share 6 shards (2 each). One is SIGKILLed in the middle
// of the load: once its member entry and its shard Leases expire, its two
// shards move to the two others (3 each, read from the Leases'
// holderIdentity), which take them from their checkpoints. Nothing is lost
// or reordered. Gate on: every list and watch of the scope that each
// replica made carried its shard's shardSelector (audit log, by the
// replica's impersonated user), kubefeed_shard_server_side is 1 and no
// object was dropped client-side. Gate off: kubefeed_shard_server_side is
// 0 and each replica dropped objects of other shards
// (kubefeed_shard_filtered_total > 0).
func TestShardedReplicaKilledMidLoadLosesNothing(t *testing.T) {
	forEachShardGate(t, "kill", func(t *testing.T, e *shardEnv) {
		a, b, c := e.start(t, "a"), e.start(t, "b"), e.start(t, "c")
		held := e.waitBalanced(t, "three replicas started", a, b, c)
		load := e.startLoad(t, 23)
		time.Sleep(3 * time.Second)

		victim := b
		e.checkServerSide(t, victim) // its metrics, before they are gone
		gone := held[victim.id]
		victim.kill(t)
		killed := time.Now()
		t.Logf("%s (shards %v) SIGKILLed after %d writes", victim.name, gone, load.ops.Load())
		after := e.waitBalanced(t, "after the kill", a, c)
		t.Logf("shards %v taken over %v after the kill: %s holds %v, %s holds %v", gone, time.Since(killed).Round(time.Millisecond),
			a.name, after[a.id], c.name, after[c.id])
		onlyMoved(t, "the kill", held, after, []*shardReplica{victim}, []*shardReplica{a, c})
		time.Sleep(2 * time.Second) // the survivors deliver the moved shards under load
		ops := load.finish(t)
		e.checkShardedFeed(t, ops, false)
		e.checkServerSide(t, a, c)
		e.checkAPIServerShards(t)
		e.checkAudit(t, map[*shardReplica][]int{a: after[a.id], b: gone, c: after[c.id]})
	})
}

// Two replicas share 6 shards (3 each); under load a third joins and takes
// 2 of them (each old owner drains and hands over through its
// checkpoint), then one of the first two leaves with SIGTERM (it drains,
// flushes, releases its Leases and leaves the registry, exit 0) and the
// other two take its shards. Nothing is lost or reordered, and since every
// handover was clean, no patch starts from a version the consumer does not
// hold.
func TestShardedReplicaJoiningAndLeavingRebalances(t *testing.T) {
	forEachShardGate(t, "rebalance", func(t *testing.T, e *shardEnv) {
		a, b := e.start(t, "a"), e.start(t, "b")
		before := e.waitBalanced(t, "two replicas started", a, b)
		load := e.startLoad(t, 24)
		time.Sleep(2 * time.Second)

		c := e.start(t, "c")
		joined := time.Now()
		mid := e.waitBalanced(t, "after the third joined", a, b, c)
		t.Logf("%s joined after %d writes; balanced %v later: %s %v -> %v, %s %v -> %v, %s %v", c.name, load.ops.Load(),
			time.Since(joined).Round(time.Millisecond), a.name, before[a.id], mid[a.id], b.name, before[b.id], mid[b.id], c.name, mid[c.id])
		onlyMoved(t, "the join", before, mid, []*shardReplica{a, b}, []*shardReplica{c})
		time.Sleep(2 * time.Second)

		e.checkServerSide(t, a)
		termed := time.Now()
		if code := a.term(60 * time.Second); code != 0 {
			t.Fatalf("%s exit code after SIGTERM: %d; log:\n%s", a.name, code, a.logs.String())
		}
		drained := time.Since(termed).Round(time.Millisecond)
		after := e.waitBalanced(t, "after one left", b, c)
		t.Logf("%s (shards %v) left in %v; balanced %v after the SIGTERM: %s %v, %s %v", a.name, mid[a.id], drained,
			time.Since(termed).Round(time.Millisecond), b.name, after[b.id], c.name, after[c.id])
		onlyMoved(t, "the leave", mid, after, []*shardReplica{a}, []*shardReplica{b, c})
		if live := e.members(t); len(live) != 2 || slices.Contains(live, a.id) {
			t.Errorf("members registry after %s left: %v, want only %s and %s", a.name, live, b.id, c.id)
		}
		time.Sleep(2 * time.Second)
		ops := load.finish(t)
		e.checkShardedFeed(t, ops, true)
		e.checkServerSide(t, b, c)
		e.checkAPIServerShards(t)
		all := func(id string) []int { return union(before[id], mid[id], after[id]) }
		e.checkAudit(t, map[*shardReplica][]int{a: all(a.id), b: all(b.id), c: all(c.id)})
	})
}

// A replica killed while it hands shards over: under load a third
// replica joins two, and the first old owner to start handing a shard over
// is SIGKILLed at once, in the middle of its drain. The shards it was
// handing over and those it kept end up with the two others (from the
// Lease it released or once its Leases expired), and nothing is lost or
// reordered.
func TestShardedReplicaKilledDuringHandover(t *testing.T) {
	e := newShardEnv(t, cp.APIServer(), "shard-handover-kill", false)
	a, b := e.start(t, "a"), e.start(t, "b")
	e.waitBalanced(t, "two replicas started", a, b)
	load := e.startLoad(t, 25)
	time.Sleep(2 * time.Second)
	marks := map[*shardReplica]int{a: len(a.logs.String()), b: len(b.logs.String())}
	c := e.start(t, "c")
	var victim, other *shardReplica
	deadline := time.Now().Add(30 * time.Second)
	for victim == nil {
		for r, mark := range marks {
			if handingOverRE.MatchString(r.logs.String()[mark:]) {
				victim = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica handed a shard over to %s in 30s", c.name)
		}
		time.Sleep(time.Millisecond)
	}
	victim.kill(t)
	other = a
	if victim == a {
		other = b
	}
	killed := time.Now()
	after := e.waitBalanced(t, "after the kill", other, c)
	t.Logf("%s SIGKILLed as it handed over (after %d writes); balanced %v later: %s %v, %s %v", victim.name, load.ops.Load(),
		time.Since(killed).Round(time.Millisecond), other.name, after[other.id], c.name, after[c.id])
	time.Sleep(2 * time.Second)
	e.checkShardedFeed(t, load.finish(t), false)
}

// handingOverRE matches a rebalance in which a replica hands shards over.
var handingOverRE = regexp.MustCompile(`"handing over": \[[0-9]`)

// A replica paused (SIGSTOP) past its Leases, under load: the two others
// take its shards; when it resumes it must not send anything for them (the
// shards' fences: its renewals are overdue), and whatever it does next
// (stop with an error, or rejoin and take shards back through their
// checkpoints), the feed stays complete and in order.
func TestShardedReplicaPausedPastItsLeases(t *testing.T) {
	e := newShardEnv(t, cp.APIServer(), "shard-pause", false)
	a, b, c := e.start(t, "a"), e.start(t, "b"), e.start(t, "c")
	held := e.waitBalanced(t, "three replicas started", a, b, c)
	load := e.startLoad(t, 26)
	time.Sleep(2 * time.Second)
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	after := e.waitBalanced(t, "while paused", a, c)
	t.Logf("%s (shards %v) paused after %d writes; balanced %v later: %s %v, %s %v", b.name, held[b.id], load.ops.Load(),
		time.Since(paused).Round(time.Millisecond), a.name, after[a.id], c.name, after[c.id])
	onlyMoved(t, "the pause", held, after, []*shardReplica{b}, []*shardReplica{a, c})
	time.Sleep(time.Second)
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // it resumes; it stops or rejoins
	rs := []*shardReplica{a, c}
	if !b.exited() {
		rs = append(rs, b)
	} else {
		t.Logf("%s exited after it resumed (%v)", b.name, b.waitErr)
	}
	final := e.waitBalanced(t, "after the pause", rs...)
	t.Logf("after the pause: %v", final)
	time.Sleep(time.Second)
	e.checkShardedFeed(t, load.finish(t), false)
}

// forEachShardGate runs body as subtest "gate on", against a new control
// plane with ShardedListAndWatch and an audit log, and "gate off",
// against the package's control plane. name makes the namespaces unique.
func forEachShardGate(t *testing.T, name string, body func(t *testing.T, e *shardEnv)) {
	t.Run("gate on", func(t *testing.T) {
		start := time.Now()
		gated := cluster.StartT(t, cluster.Options{FeatureGates: "ShardedListAndWatch=true", AuditLog: true})
		t.Logf("control plane with ShardedListAndWatch started in %v", time.Since(start).Round(time.Millisecond))
		body(t, newShardEnv(t, gated.APIServer(), "shard-"+name+"-on", true))
		t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("gate off", func(t *testing.T) {
		start := time.Now()
		body(t, newShardEnv(t, cp.APIServer(), "shard-"+name+"-off", false))
		t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	})
}

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
}

func newShardEnv(t *testing.T, api *cluster.APIServer, name string, gate bool) *shardEnv {
	t.Helper()
	e := &shardEnv{api: api, gate: gate, cs: api.Clientset(), dyn: dynamic.NewForConfigOrDie(api.Config()), ns: name, lns: name + "-lease"}
	for _, ns := range []string{e.ns, e.lns} {
		if _, err := e.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	e.nats = natstest.StartT(t, natstest.Options{})
	e.cfg = writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
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
`, e.nats.URL(), e.ns, e.lns, shards))
	return e
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
	out := make([]string, shards)
	for i := range shards {
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
			if n < shards/len(rs) || n > (shards+len(rs)-1)/len(rs) {
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
// of their own ConfigMaps (w<k>-0…w<k>-14) until finish: names are deleted
// and created again, so that the incarnations of a name fall into
// different shards.
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

// checkShardedFeed waits until the stream, rebuilt by package consumer
// (which keeps a name's incarnations apart by uid: they come from
// different shards), equals a LIST of the namespace, with no incarnation
// left over; then it checks that each uid's events are in resourceVersion
// order and that no id is stored twice, and runs `kubefeed verify`. clean
// (every handover was a drain): no patch may start from a version the
// consumer does not hold, and no exception to the order is made.
func (e *shardEnv) checkShardedFeed(t *testing.T, ops int64, clean bool) {
	t.Helper()
	loadEnd := time.Now()
	want := func() map[string]string {
		out := map[string]string{}
		for subject, o := range listedOn(t, e.dyn, []string{e.ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"}) {
			out[subject] = mustJSON(o)
		}
		return out
	}
	var (
		st    *kfconsumer.State
		lines [][]byte
		w     map[string]string
	)
	deadline := time.Now().Add(90 * time.Second)
	for {
		lines = streamLines(t, e.nats.URL())
		st = kfconsumer.New(kfconsumer.Options{})
		for i, l := range lines {
			ev, err := kfconsumer.Decode(l)
			if err == nil {
				err = st.Apply(ev)
			}
			if err != nil {
				t.Fatalf("stream message %d: %v", i+1, err)
			}
		}
		w = want()
		got := map[string]string{}
		for _, en := range st.AllIncarnations() {
			subject := fmt.Sprintf("/api/v1/namespaces/%s/configmaps/%s", en.Key.Namespace, en.Key.Name)
			if _, dup := got[subject]; dup {
				subject += " (uid " + en.UID + ")"
			}
			got[subject] = normalJSON(t, en.Object)
		}
		if reflect.DeepEqual(got, w) {
			break
		}
		if time.Now().After(deadline) {
			for _, k := range sortedKeys(w) {
				if got[k] != w[k] {
					t.Errorf("%s:\n rebuilt %s\n listed  %s", k, got[k], w[k])
				}
			}
			for _, k := range sortedKeys(got) {
				if _, ok := w[k]; !ok {
					t.Errorf("%s: rebuilt but not listed: %s", k, got[k])
				}
			}
			t.FailNow()
		}
		time.Sleep(250 * time.Millisecond)
	}
	caughtUp := time.Since(loadEnd).Round(time.Millisecond)

	// Per uid: resourceVersions never go down; each id once. One
	// exception after a SIGKILL (not clean), not of sharding's making: the
	// new owner finds gone an object whose last delivery the dead one had
	// not checkpointed yet, and its inferred (recovered) deletion carries
	// the checkpoint's version, which the stream already holds, below the
	// last one sent. An unsharded leader failover does the same (the
	// exporter's restore, not the shards); such deletions are counted and
	// logged, not failed.
	last := map[string]string{}
	sent := map[string]map[string]bool{} // uid -> versions in the stream
	byUID := map[string][]string{}       // uid -> its events, for the report
	var bad, stale []string
	ids := map[string]int{}
	gaps := 0
	for i, l := range lines {
		ev, _ := kfconsumer.Decode(l)
		if prev, dup := ids[ev.ID]; dup {
			t.Errorf("stream messages %d and %d have the same id %s", prev, i+1, ev.ID)
		}
		ids[ev.ID] = i + 1
		if ev.Type == kfconsumer.TypeGap {
			gaps++
			continue
		}
		var d struct {
			Prev      string `json:"previousResourceVersion"`
			Recovered bool   `json:"recovered"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		byUID[ev.UID] = append(byUID[ev.UID], fmt.Sprintf("message %d %s prev %q recovered %v time %s", i+1, ev.ID, d.Prev, d.Recovered, ev.Time.Format(time.StampMicro)))
		p, ok := last[ev.UID]
		switch {
		case !ok || !rvLess(ev.ResourceVersion, p):
			last[ev.UID] = ev.ResourceVersion
		case !clean && ev.Change() == kfconsumer.Deleted && d.Recovered && sent[ev.UID][ev.ResourceVersion]:
			stale = append(stale, ev.UID)
		case !slices.Contains(bad, ev.UID):
			bad = append(bad, ev.UID)
		}
		if sent[ev.UID] == nil {
			sent[ev.UID] = map[string]bool{}
		}
		sent[ev.UID][ev.ResourceVersion] = true
	}
	for _, uid := range bad {
		t.Errorf("uid %s: events not in resourceVersion order:\n  %s", uid, strings.Join(byUID[uid], "\n  "))
	}
	for _, uid := range stale {
		t.Logf("uid %s: inferred deletion with the checkpoint's version, below the last sent (the exporter's restore after a SIGKILL, not sharding):\n  %s", uid, strings.Join(byUID[uid], "\n  "))
	}
	stats := st.Stats()
	if clean && stats.Rebased != 0 {
		t.Errorf("%d patches start from a version the consumer does not hold; after clean handovers, want none", stats.Rebased)
	}
	verifyMatches(t, e.api.Kubeconfig, e.cfg, "js", len(w))
	t.Logf("%d writes; the stream holds %d events (%d gap markers, %d uids, %d stale inferred deletions), %d objects alive; consumer %+v; caught up %v after the load",
		ops, len(lines), gaps, len(last), len(stale), len(w), stats, caughtUp)
}

// normalJSON is v as JSON, numbers as listedOn's (float64) would print.
func normalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return mustJSON(m)
}

var filteredRE = regexp.MustCompile(`(?m)^kubefeed_shard_filtered_total\{[^}]*\} ([0-9.e+]+)$`)

// checkServerSide checks, from each replica's metrics, how the shards
// were filtered: gate on, kubefeed_shard_server_side is 1 and no object
// arrived outside a shard; gate off, it is 0 and objects of other shards
// arrived and were dropped.
func (e *shardEnv) checkServerSide(t *testing.T, rs ...*shardReplica) {
	t.Helper()
	for _, r := range rs {
		text := scrape(t, r.metrics)
		side := metricValue(t, text, "kubefeed_shard_server_side")
		filtered := 0.0
		for _, m := range filteredRE.FindAllStringSubmatch(text, -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			filtered += v
		}
		switch {
		case e.gate && (side != 1 || filtered != 0):
			t.Errorf("%s with the gate: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v; want 1 and 0", r.name, side, filtered)
		case !e.gate && (side != 0 || filtered == 0):
			t.Errorf("%s without the gate: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v; want 0 and more than 0", r.name, side, filtered)
		default:
			t.Logf("%s: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v", r.name, side, filtered)
		}
	}
}

var (
	watchShardsRE   = regexp.MustCompile(`(?m)^apiserver_watch_shards_total\{group="",resource="configmaps"\} ([0-9.e+]+)$`)
	watchFilteredRE = regexp.MustCompile(`(?m)^apiserver_watch_filtered_events_total\{group="",resource="configmaps"\} ([0-9.e+]+)$`)
)

// checkAPIServerShards reads the API server's own account (gate on only):
// its watch cache dropped configmaps events of other shards before sending
// them (apiserver_watch_filtered_events_total), and sharded configmaps
// watches are open (apiserver_watch_shards_total). That gauge is only
// checked for being positive: the alpha feature decrements it on every
// call of a cache watcher's forget, which runs twice for a watch that
// ends, so after watches ended it counts fewer than are open (3 for 6
// after a kill and a handover).
func (e *shardEnv) checkAPIServerShards(t *testing.T) {
	t.Helper()
	if !e.gate {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := e.cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	value := func(re *regexp.Regexp) float64 {
		m := re.FindStringSubmatch(string(b))
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	watches, filtered := value(watchShardsRE), value(watchFilteredRE)
	if watches <= 0 || filtered <= 0 {
		t.Errorf("API server: apiserver_watch_shards_total{configmaps} %v, apiserver_watch_filtered_events_total{configmaps} %v; want both above 0", watches, filtered)
	} else {
		t.Logf("API server: apiserver_watch_shards_total{configmaps} %v, %v events filtered out by shard", watches, filtered)
	}
}

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	AuditID          string `json:"auditID"`
	Verb             string `json:"verb"`
	RequestURI       string `json:"requestURI"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
	} `json:"objectRef"`
}

// checkAudit reads the API server's audit log (gate on only): every list
// and watch of the watched ConfigMaps that a replica made carried a
// shardSelector, each one a shard's selector (or, for the one-item list
// that probes the gate, shard 0 of 2's), and each replica watched with the
// selector of every shard it held (held, by replica).
func (e *shardEnv) checkAudit(t *testing.T, held map[*shardReplica][]int) {
	t.Helper()
	if !e.gate {
		return
	}
	b, err := os.ReadFile(e.api.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	bySelector := map[string]int{}
	for i := range shards {
		bySelector[shard.Of(i, shards).Selector()] = i
	}
	probe := shard.Of(0, 2).Selector()
	type req struct{ verb, selector string }
	reqs := map[string]map[string]req{} // user -> auditID -> request
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev auditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit log line %q: %v", line, err)
		}
		if ev.ImpersonatedUser == nil || ev.ObjectRef == nil || ev.ObjectRef.Resource != "configmaps" || ev.ObjectRef.Namespace != e.ns ||
			(ev.Verb != "list" && ev.Verb != "watch") {
			continue
		}
		u, err := url.Parse(ev.RequestURI)
		if err != nil {
			t.Fatalf("audit requestURI %q: %v", ev.RequestURI, err)
		}
		user := ev.ImpersonatedUser.Username
		if reqs[user] == nil {
			reqs[user] = map[string]req{}
		}
		reqs[user][ev.AuditID] = req{verb: ev.Verb, selector: u.Query().Get("shardSelector")}
	}
	for r, shardsHeld := range held {
		user := "kubefeed-" + r.name
		watched := map[int]int{}
		lists, watches := 0, 0
		for _, q := range reqs[user] {
			i, ok := bySelector[q.selector]
			switch {
			case ok && q.verb == "watch":
				watches++
				watched[i]++
			case ok:
				lists++
			case q.verb == "list" && q.selector == probe:
			default:
				t.Errorf("%s made a %s of the configmaps of %s with shardSelector %q", user, q.verb, e.ns, q.selector)
			}
		}
		for _, i := range shardsHeld {
			if watched[i] == 0 {
				t.Errorf("%s held shard %d but never watched with its selector; its watches by shard: %v", user, i, watched)
			}
		}
		t.Logf("audit: %s made %d lists and %d watches of the scope, each with its shard's selector; watches by shard %v", user, lists, watches, watched)
	}
}

func union(sets ...[]int) []int {
	var out []int
	for _, s := range sets {
		for _, i := range s {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}
