package main

// Sharding (issue 23): what splitting the feed over replicas saves in
// memory and buys in throughput. N ~1 KiB ConfigMaps are created in one
// namespace; then the real kubefeed binary drains them into one JetStream
// stream (`initialList: emit`, a JetStream KV checkpoint, leader
// election), as
//
//   - single: one unsharded replica (the baseline);
//   - client-side: 3 replicas with `sharding: {shards: 12}` on an API
//     server without the ShardedListAndWatch gate, which ignores
//     shardSelector: each shard lists and watches everything and keeps its
//     own uid range;
//   - server-side: the same on a second control plane whose API server
//     runs with ShardedListAndWatch=true, which lists and watches each
//     shard's range only.
//
// Each row has a nats-server, stream, bucket and Leases of its own; the
// replicas start together. Measured per replica: VmRSS once every shard it
// holds has synced, VmRSS once the stream holds every object (the steady
// cache), VmHWM, CPU from start to drained, events delivered, objects
// dropped by its client-side filter; for the row: the added events in the
// stream, first → last (their JetStream timestamps), and the CPU of every
// process measured (kubefeed, the API server, etcd, nats-server) against
// the wall time, with the whole machine's busy cores beside it.

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

var (
	shardingObjects = flag.Int("sharding", 100000, "ConfigMaps drained in the sharding measurement (0: skip)")
	shardingRuns    = flag.Int("sharding-runs", 3, "runs of the sharding measurement, each of every row (the targets take the medians of the runs' own ratios)")
	shardingCluster = flag.Bool("sharding-cluster", false, "run the sharding rows on a 3-node JetStream cluster (nats-server processes; stream and bucket with 3 replicas) instead of one embedded nats-server")
	shardingOnly    = flag.Bool("sharding-only", false, "run only the sharding measurement (one replica; 3 replicas × 12 shards with the ShardedListAndWatch gate off and on); with -out, put it into out/benchmarks.json and render the report again")
)

const (
	shardingReplicas = 3
	shardingShards   = 12
	// shardingGate is the API server's feature gate of the server-side row.
	shardingGate = "ShardedListAndWatch=true"
	// shardingTimeout bounds each wait of a row (a liveness bound).
	shardingTimeout = 15 * time.Minute
)

// shardingModes are the rows, in the report's order.
var shardingModes = []string{"single", "client-side", "server-side"}

// shardingReport is the sharding section of the report.
type shardingReport struct {
	Date     string `json:"date"`
	Objects  int    `json:"objects"`
	Replicas int    `json:"replicas"`
	Shards   int    `json:"shards"`
	Cores    int    `json:"cores"`
	// JetStream: "" for one embedded nats-server, else what it was
	// (-sharding-cluster: a cluster of three, stream and bucket R3).
	JetStream string        `json:"jetStream,omitempty"`
	Rows      []shardingRow `json:"rows"`
}

// shardingRow is one configuration's measurement in one run.
type shardingRow struct {
	Mode string `json:"mode"`
	// Run counts from 0; every run measures every mode.
	Run int `json:"run"`
	// Gate: the API server ran with ShardedListAndWatch=true; ServerSide:
	// every replica said so (kubefeed_shard_server_side 1).
	Gate       bool         `json:"gate"`
	ServerSide bool         `json:"serverSide"`
	Replicas   []replicaRow `json:"replicas"`
	// Added: added events of the namespace stored in the stream; Distinct:
	// the objects they name (Added > Distinct: an object sent twice).
	Added    int `json:"added"`
	Distinct int `json:"distinct"`
	// DrainSeconds: the first → the last added event stored (JetStream
	// timestamps); Rate: Added over it. StartSeconds: the replicas'
	// start → the last added event stored (listing and taking the shards
	// included).
	DrainSeconds float64 `json:"drainSeconds"`
	Rate         float64 `json:"rate"`
	StartSeconds float64 `json:"startSeconds"`
	// CPU seconds from the replicas' start until the stream held every
	// object: the replicas summed, the API server, etcd, and the embedded
	// nats-server (benchrun's own process, its polling included);
	// WallSeconds that interval; MachineCores: the cores the whole machine
	// kept busy over it (/proc/stat, other work on it included).
	KubefeedCPU  float64 `json:"kubefeedCPU"`
	APIServerCPU float64 `json:"apiServerCPU"`
	EtcdCPU      float64 `json:"etcdCPU"`
	NATSCPU      float64 `json:"natsCPU"`
	WallSeconds  float64 `json:"wallSeconds"`
	MachineCores float64 `json:"machineCores"`
	// Handovers: shards handed from one replica to another meanwhile
	// ("shards rebalanced" lines naming some).
	Handovers int `json:"handovers"`
}

// replicaRow is one replica of a row.
type replicaRow struct {
	// Shards: kubefeed_shards_held once the stream held every object.
	// SyncedSeconds and SyncedRSSMiB are taken once the shards held by all
	// replicas add up to every shard and each of its shards' informers
	// synced (kubefeed_informer_synced); 0 when that did not happen before
	// the stream held every object.
	Shards float64 `json:"shards"`
	// SyncedSeconds: start → every shard it held synced (unsharded: its
	// caches); SyncedRSSMiB its VmRSS then (the shards synced first are
	// emitting already). DrainedRSSMiB: VmRSS 2 s after the stream held
	// every object; PeakRSSMiB: VmHWM then.
	SyncedSeconds float64 `json:"syncedSeconds"`
	SyncedRSSMiB  float64 `json:"syncedRSSMiB"`
	DrainedRSSMiB float64 `json:"drainedRSSMiB"`
	PeakRSSMiB    float64 `json:"peakRSSMiB"`
	CPUSeconds    float64 `json:"cpuSeconds"`
	// Delivered: kubefeed_events_delivered_total; Filtered:
	// kubefeed_shard_filtered_total (objects of other shards dropped); of
	// the shards it held at the end (a shard handed over takes its
	// counters along).
	Delivered float64 `json:"delivered"`
	Filtered  float64 `json:"filtered"`
	// MemberConflicts: its beats to the members Lease refused for a
	// conflict (logged "members registry" … "the object has been
	// modified"); such a beat does not count it as live.
	MemberConflicts int `json:"memberConflicts,omitempty"`
}

// CPUCores is the row's measured CPU over its wall time, in cores.
func (r shardingRow) CPUCores() float64 {
	if r.WallSeconds <= 0 {
		return 0
	}
	return (r.KubefeedCPU + r.APIServerCPU + r.EtcdCPU + r.NATSCPU) / r.WallSeconds
}

// maxRSS is the largest of the replicas' values of f.
func (r shardingRow) maxRSS(f func(replicaRow) float64) float64 {
	m := 0.0
	for _, rr := range r.Replicas {
		m = max(m, f(rr))
	}
	return m
}

func drainedRSS(r replicaRow) float64 { return r.DrainedRSSMiB }
func peakRSS(r replicaRow) float64    { return r.PeakRSSMiB }
func syncedRSS(r replicaRow) float64  { return r.SyncedRSSMiB }

// runs are the rows of mode, by run.
func (s *shardingReport) runs(mode string) []shardingRow {
	var out []shardingRow
	for _, r := range s.Rows {
		if r.Mode == mode {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b shardingRow) int { return cmp.Compare(a.Run, b.Run) })
	return out
}

// run is mode's row of run (nil when not measured).
func (s *shardingReport) run(mode string, run int) *shardingRow {
	for i := range s.Rows {
		if s.Rows[i].Mode == mode && s.Rows[i].Run == run {
			return &s.Rows[i]
		}
	}
	return nil
}

// measureSharding runs every row runs times, on two control planes
// filled alike: single and client-side on e's, server-side on a second
// one with the gate. Each run starts at another row, so that no row always
// follows the same one.
func measureSharding(e *env, n, runs int) (*shardingReport, error) {
	bin, err := kubefeedBinary(e.dir)
	if err != nil {
		return nil, err
	}
	rep := &shardingReport{Date: time.Now().UTC().Format(time.RFC3339), Objects: n, Replicas: shardingReplicas,
		Shards: shardingShards, Cores: runtime.NumCPU()}
	if *shardingCluster {
		rep.JetStream = "a 3-node cluster, stream and bucket with 3 replicas"
	}
	plane := shardPlane{cp: e.cp, cs: e.cs}
	cp, err := cluster.Start(cluster.Options{FeatureGates: shardingGate})
	if err != nil {
		return nil, fmt.Errorf("control plane with %s: %w", shardingGate, err)
	}
	defer cp.Stop()
	wc := cp.Config()
	wc.QPS, wc.Burst = 20000, 20000
	wc.ContentType = "application/vnd.kubernetes.protobuf"
	wc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(wc)
	if err != nil {
		return nil, err
	}
	gated := shardPlane{cp: cp, cs: cs, gate: true}
	if plane.ns, err = plane.fill(n); err != nil {
		return nil, err
	}
	defer func() { _ = e.cs.CoreV1().Namespaces().Delete(context.Background(), plane.ns, metav1.DeleteOptions{}) }()
	if gated.ns, err = gated.fill(n); err != nil {
		return nil, err
	}
	for r := 0; r < runs; r++ {
		k := r % len(shardingModes)
		for _, mode := range append(append([]string(nil), shardingModes[k:]...), shardingModes[:k]...) {
			p := plane
			if mode == "server-side" {
				p = gated
			}
			row, err := measureShardingRow(e, bin, p, mode, r, n)
			if err != nil {
				return nil, fmt.Errorf("sharding %s, run %d: %w", mode, r+1, err)
			}
			printShardingRow(row)
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, nil
}

func printShardingRow(r shardingRow) {
	fmt.Printf("sharding %-11s run %d: %d added (%d objects) in %.1f s: %.0f/s (start → last %.1f s); CPU s: kubefeed %.1f, API server %.1f, etcd %.1f, nats %.1f over %.1f s (%.2f cores; machine %.2f)\n",
		r.Mode, r.Run+1, r.Added, r.Distinct, r.DrainSeconds, r.Rate, r.StartSeconds, r.KubefeedCPU, r.APIServerCPU, r.EtcdCPU, r.NATSCPU, r.WallSeconds, r.CPUCores(), r.MachineCores)
	for i, rr := range r.Replicas {
		fmt.Printf("  replica %d: %g shards, synced after %.1f s at %.0f MiB, drained %.0f MiB, peak %.0f MiB, %.1f CPU-s, %g delivered, %g filtered\n",
			i, rr.Shards, rr.SyncedSeconds, rr.SyncedRSSMiB, rr.DrainedRSSMiB, rr.PeakRSSMiB, rr.CPUSeconds, rr.Delivered, rr.Filtered)
	}
}

// shardPlane is a control plane the rows run on, and the namespace of
// its ConfigMaps.
type shardPlane struct {
	cp   *cluster.ControlPlane
	cs   *kubernetes.Clientset
	gate bool
	ns   string
}

// fill creates n ConfigMaps in a fresh namespace and names it.
func (p shardPlane) fill(n int) (string, error) {
	ns := fmt.Sprintf("sh%d", time.Now().Unix()%100000)
	if err := createNS(p.cs, ns); err != nil {
		return "", err
	}
	t := time.Now()
	if err := write(p.cs, ns, n, 0); err != nil {
		return "", fmt.Errorf("create %d ConfigMaps: %w", n, err)
	}
	fmt.Printf("sharding: %d ConfigMaps created in %.0f s (gate %v)\n", n, time.Since(t).Seconds(), p.gate)
	return ns, nil
}

// measureShardingRow is one row: its replicas started together on a
// nats-server of their own, until the stream holds every object.
func measureShardingRow(e *env, bin string, p shardPlane, mode string, run, n int) (shardingRow, error) {
	row := shardingRow{Mode: mode, Run: run, Gate: p.gate}
	ns := p.ns
	ctx := context.Background()
	dir := filepath.Join(e.dir, fmt.Sprintf("sharding-%s-%d", mode, run))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	// JetStream: the embedded nats-server (in benchrun's process), or a
	// cluster of three with the stream and bucket on all three.
	var (
		natsURL, servers, replicasYAML string
		natsCPU                        func() float64
	)
	if *shardingCluster {
		c, stop, err := startNATSCluster(dir)
		if err != nil {
			return row, err
		}
		defer stop()
		natsURL, servers, replicasYAML = c.URL(), strings.Join(c.URLs(), ", "), ", replicas: 3"
		clusterPIDs := natsPIDs(dir)
		natsCPU = func() float64 {
			var sum float64
			for _, pid := range clusterPIDs {
				c, _ := procCPUSeconds(pid)
				sum += c
			}
			return sum
		}
	} else {
		srv, err := natstest.Start(natstest.Options{StoreDir: filepath.Join(dir, "nats")})
		if err != nil {
			return row, err
		}
		defer srv.Shutdown()
		natsURL, servers = srv.URL(), srv.URL()
		natsCPU = func() float64 { c, _ := procCPUSeconds(os.Getpid()); return c }
	}
	leaseNS := fmt.Sprintf("%s-%s-%d", ns, mode, run)
	if err := createNS(p.cs, leaseNS); err != nil {
		return row, err
	}
	defer func() { _ = p.cs.CoreV1().Namespaces().Delete(ctx, leaseNS, metav1.DeleteOptions{}) }()
	const stream, bucket, clusterName = "KUBEFEED_SHARDING", "kf-sharding", "bench"
	replicas, sharding := 1, ""
	if mode != "single" {
		replicas, sharding = shardingReplicas, fmt.Sprintf("sharding: {shards: %d}\n", shardingShards)
	}
	pids, err := controlPlanePIDs(p.cp.Dir)
	if err != nil {
		return row, err
	}

	type replica struct {
		k      *kubefeedProc
		port   int
		synced bool
	}
	var rs []*replica
	defer func() {
		for _, r := range rs {
			r.k.kill()
		}
	}()
	cpu0 := map[string]float64{}
	for name, pid := range pids {
		cpu0[name], _ = procCPUSeconds(pid)
	}
	nats0 := natsCPU()
	busy0, total0 := machineCPU()
	t0 := time.Now()
	for i := 0; i < replicas; i++ {
		port, err := freeTCPPort()
		if err != nil {
			return row, err
		}
		cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: %s
watch:
  - {resource: configmaps, namespaces: [%s], initialList: emit}
sinks:
  - name: js
    jetstream: {servers: [%s], stream: %s, subject: "kubefeed.{cluster}.{namespace}.{name}.{change}", provision: {duplicateWindow: 2m%s}}
checkpoint:
  jetstream: {servers: [%s], bucket: %s%s}
leaderElection: {enabled: true, namespace: %s, name: kf}
metrics: {address: "127.0.0.1:%d"}
%s`, clusterName, ns, servers, stream, replicasYAML, servers, bucket, replicasYAML, leaseNS, port, sharding)
		path := filepath.Join(dir, fmt.Sprintf("r%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return row, err
		}
		k, err := spawnKubefeed(bin, path, p.cp.Kubeconfig())
		if err != nil {
			return row, err
		}
		rs = append(rs, &replica{k: k, port: port})
	}
	row.Replicas = make([]replicaRow, replicas)

	nc, err := nats.Connect(natsURL)
	if err != nil {
		return row, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return row, err
	}
	stored := func() uint64 {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if st, err := js.Stream(sctx, stream); err == nil {
			if info, err := st.Info(sctx); err == nil {
				return info.State.Msgs
			}
		}
		return 0
	}

	// Until the stream holds a message per object: each replica's RSS
	// once all the shards it holds have synced. (The stream, not the
	// replicas' counters, tells when: a shard handed over takes its
	// counters with it.)
	deadline := time.Now().Add(shardingTimeout)
	for {
		var held float64
		texts := make([]string, len(rs))
		for i, r := range rs {
			if !r.k.running() {
				return row, fmt.Errorf("replica %d exited:\n%s", i, r.k.logTail())
			}
			texts[i] = scrapeText(r.port)
			held += sumMetric(texts[i], "kubefeed_shards_held", nil)
		}
		for i, r := range rs {
			if r.synced {
				continue
			}
			want := 1.0
			if sharding != "" {
				// Once every shard is held; a replica that holds
				// none then is synced as it is.
				want = sumMetric(texts[i], "kubefeed_shards_held", nil)
				if held < shardingShards {
					continue
				}
			}
			if sumMetric(texts[i], "kubefeed_informer_synced", nil) >= want {
				r.synced = true
				row.Replicas[i].SyncedSeconds = time.Since(t0).Seconds()
				row.Replicas[i].SyncedRSSMiB, _ = procStatusMiB(r.k.pid(), "VmRSS")
			}
		}
		if m := stored(); m >= uint64(n) {
			break
		} else if time.Now().After(deadline) {
			return row, fmt.Errorf("%d messages in the stream for %d objects after %s; replica 0:\n%s", m, n, shardingTimeout, rs[0].k.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The stream's account of it: every object added (gap markers may
	// have counted above; a few adds may still be on their way).
	var added streamAdds
	if err := waitFor(time.Minute, func() (bool, error) {
		var err error
		added, err = readAdds(ctx, js, stream, fmt.Sprintf("kubefeed.%s.%s.*.added", clusterName, ns))
		return err == nil && added.distinct >= n, err
	}); err != nil {
		return row, fmt.Errorf("the stream holds %d added events of %d objects, %d expected: %w", added.count, added.distinct, n, err)
	}
	row.WallSeconds = time.Since(t0).Seconds()
	for i, r := range rs {
		row.Replicas[i].CPUSeconds, _ = procCPUSeconds(r.k.pid())
		row.KubefeedCPU += row.Replicas[i].CPUSeconds
	}
	cpu := func(name string, pid int) float64 {
		c, _ := procCPUSeconds(pid)
		return c - cpu0[name]
	}
	row.APIServerCPU, row.EtcdCPU, row.NATSCPU = cpu("kube-apiserver", pids["kube-apiserver"]), cpu("etcd", pids["etcd"]), natsCPU()-nats0
	busy1, total1 := machineCPU()
	if total1 > total0 {
		row.MachineCores = float64(runtime.NumCPU()) * (busy1 - busy0) / (total1 - total0)
	}
	row.Added, row.Distinct = added.count, added.distinct
	row.DrainSeconds = added.last.Sub(added.first).Seconds()
	if row.DrainSeconds > 0 {
		row.Rate = float64(added.count) / row.DrainSeconds
	}
	row.StartSeconds = added.last.Sub(t0).Seconds()

	// The steady state: caches full, queues empty.
	time.Sleep(2 * time.Second)
	serverSide := len(rs) > 0 && sharding != ""
	for i, r := range rs {
		text := scrapeText(r.port)
		rr := &row.Replicas[i]
		rr.Shards = sumMetric(text, "kubefeed_shards_held", nil)
		rr.Delivered = sumMetric(text, "kubefeed_events_delivered_total", nil)
		rr.Filtered = sumMetric(text, "kubefeed_shard_filtered_total", nil)
		serverSide = serverSide && sumMetric(text, "kubefeed_shard_server_side", nil) == 1
		rr.DrainedRSSMiB, _ = procStatusMiB(r.k.pid(), "VmRSS")
		rr.PeakRSSMiB, _ = procStatusMiB(r.k.pid(), "VmHWM")
		for _, l := range strings.Split(r.k.logs.String(), "\n") {
			if strings.Contains(l, "shards rebalanced") && !strings.Contains(l, `"handing over": []`) && strings.Contains(l, `"handing over"`) {
				row.Handovers++
			}
			if strings.Contains(l, "members registry") && strings.Contains(l, "the object has been modified") {
				rr.MemberConflicts++
			}
		}
	}
	row.ServerSide = serverSide
	return row, nil
}

// streamAdds is what a stream holds of added events: how many, of how
// many objects, stored from first to last.
type streamAdds struct {
	count, distinct int
	first, last     time.Time
}

// readAdds reads the subjects and timestamps (headers only) of the
// stream's messages on filter.
func readAdds(ctx context.Context, js jetstream.JetStream, stream, filter string) (streamAdds, error) {
	var a streamAdds
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return a, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, HeadersOnly: true})
	if err != nil {
		return a, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return a, err
	}
	if info.NumPending == 0 {
		return a, nil
	}
	it, err := cons.Messages()
	if err != nil {
		return a, err
	}
	defer it.Stop()
	seen := map[string]struct{}{}
	for {
		m, err := it.Next()
		if err != nil {
			return a, err
		}
		md, err := m.Metadata()
		if err != nil {
			return a, err
		}
		a.count++
		seen[m.Subject()] = struct{}{}
		if a.first.IsZero() || md.Timestamp.Before(a.first) {
			a.first = md.Timestamp
		}
		if md.Timestamp.After(a.last) {
			a.last = md.Timestamp
		}
		if md.NumPending == 0 {
			break
		}
		if ctx.Err() != nil {
			return a, ctx.Err()
		}
	}
	a.distinct = len(seen)
	return a, nil
}

// controlPlanePIDs finds the kube-apiserver and etcd processes of the
// control plane in dir (their command lines name it).
func controlPlanePIDs(dir string) (map[string]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := map[string]int{}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for _, name := range []string{"kube-apiserver", "etcd"} {
			if filepath.Base(args[0]) == name {
				pids[name] = pid
			}
		}
	}
	if pids["kube-apiserver"] == 0 || pids["etcd"] == 0 {
		return pids, fmt.Errorf("no kube-apiserver and etcd processes of %s (found %v)", dir, pids)
	}
	return pids, nil
}

// machineCPU is the machine's busy and total CPU time (/proc/stat's cpu
// line, in ticks; idle and iowait are not busy).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest time is counted in user already
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}

// benchHTTP is benchrun's client of kubefeed's metrics and health
// endpoints on loopback.
var benchHTTP = &http.Client{Timeout: 10 * time.Second}

// scrapeText is kubefeed's /metrics text ("" when unreachable).
func scrapeText(port int) string {
	resp, err := benchHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(b)
}
