package main

// Failover (issue 23, warm standbys): how long the feed stops when the
// leader dies, and what the standby that takes over asks of the API server.
// N ~1 KiB ConfigMaps are created in one namespace; then, for each
// leaderElection.standby mode in turn (cold: the standby lists nothing
// until it takes the Lease, then lists, restores and diffs everything;
// warm: it runs its informers and follows the shared JetStream KV
// checkpoint while standing by), two replicas of the real kubefeed binary
// run on a nats-server of their own, with a JetStream sink and a KV
// checkpoint. Replica A leads and syncs, its checkpoint is flushed, replica
// B stands by; A is SIGKILLed, and one ConfigMap is changed every 200 ms
// from then on. Measured: SIGKILL → the first of those changes stored in
// the stream, the LIST requests and watch-lists (a WATCH with
// sendInitialEvents, as client-go's informers list by default) of
// ConfigMaps the API server served meanwhile, and B's RSS.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/test/natstest"
)

var (
	failoverObjects = flag.Int("failover", 100000, "ConfigMaps cached by both replicas when the leader is SIGKILLed, in the failover measurement (0: skip)")
	failoverRuns    = flag.Int("failover-runs", 3, "runs of the failover measurement, each of both standby modes (the targets take the median failover of each mode)")
	failoverOnly    = flag.Bool("failover-only", false, "run only the failover measurement (cold and warm standby); with -out, put it into out/benchmarks.json and render the report again")
	failoverWarm    = flag.Duration("failover-warm-wait", 5*time.Minute, "how long a warm standby may take to say \"standby, warm\" on /readyz; after it, it is measured as it is")
)

// failoverModes are the leaderElection.standby modes, in the report's order.
var failoverModes = []string{"cold", "warm"}

const (
	// failoverLease is the Lease timing kubefeed uses by default (the
	// config sets none): leaseDuration 15s, renewDeadline 10s, retryPeriod 2s.
	failoverLease = 15 * time.Second
	// failoverRetry is its retryPeriod.
	failoverRetry = 2 * time.Second
	// failoverTarget is issue 23's bound on a failover: leaseDuration + 2 s.
	failoverTarget = failoverLease + 2*time.Second
	// failoverTimeout bounds each wait of the measurement (a liveness bound).
	failoverTimeout = 10 * time.Minute
	// probeEvery is the probe's pace: one change of one ConfigMap.
	probeEvery = 200 * time.Millisecond
)

// failoverReport is the failover section of the report.
type failoverReport struct {
	Date    string `json:"date"`
	Objects int    `json:"objects"`
	// LeaseSeconds is the Lease's leaseDuration; TargetSeconds the
	// target's bound (leaseDuration + 2 s).
	LeaseSeconds  float64 `json:"leaseSeconds"`
	TargetSeconds float64 `json:"targetSeconds"`
	// RetrySeconds is the Lease's retryPeriod (0 in reports written
	// before it was recorded: the default, 2 s).
	RetrySeconds float64       `json:"retrySeconds,omitempty"`
	Rows         []failoverRow `json:"rows"`
}

// failoverRow is one standby mode's measurement in one run.
type failoverRow struct {
	Standby string `json:"standby"`
	// Run counts from 0; every run measures every mode.
	Run int `json:"run"`
	// Warm: B's /readyz said "standby, warm" before A was killed (waited
	// for up to -failover-warm-wait in the warm mode); Readyz is what it
	// said, WarmWaitSeconds how long it took (or was waited for).
	Warm            bool    `json:"warm"`
	Readyz          string  `json:"readyz"`
	WarmWaitSeconds float64 `json:"warmWaitSeconds,omitempty"`
	// Seconds: SIGKILL of the leader → the first probe change (a version
	// written after the kill) stored in the stream.
	Seconds float64 `json:"seconds"`
	// LeaderSeconds: SIGKILL → B logged that it became the leader;
	// SyncedSeconds: → B logged "caches synced; delivering" after that
	// (0: it did not log it again).
	LeaderSeconds float64 `json:"leaderSeconds"`
	SyncedSeconds float64 `json:"syncedSeconds,omitempty"`
	// Probes: probe changes written from the kill until one was delivered.
	Probes int `json:"probes"`
	// Lists, WatchLists, WatchEvents: the API server's LIST requests of
	// ConfigMaps (apiserver_request_total{verb="LIST"}), its completed
	// watch-lists of ConfigMaps (apiserver_watch_list_duration_seconds_count)
	// and the watch events of ConfigMaps it sent (apiserver_watch_events_total,
	// a watch-list's initial events included), from just before the kill
	// until the probe was delivered.
	Lists       float64 `json:"lists"`
	WatchLists  float64 `json:"watchLists"`
	WatchEvents float64 `json:"watchEvents"`
	// StandbyLists, StandbyWatchLists: the same from B's start until the
	// kill (what standing by cost the API server).
	StandbyLists      float64 `json:"standbyLists"`
	StandbyWatchLists float64 `json:"standbyWatchLists"`
	// B's RSS (VmRSS) before the kill and once the probe was delivered,
	// and its peak (VmHWM) by then.
	RSSBeforeMiB float64 `json:"rssBeforeMiB"`
	RSSAfterMiB  float64 `json:"rssAfterMiB"`
	PeakRSSMiB   float64 `json:"peakRSSMiB"`
	// CPUSeconds: B's user+system CPU from the kill until the delivery.
	CPUSeconds float64 `json:"cpuSeconds"`
	// CheckpointKeys: the KV bucket's keys when A was killed.
	CheckpointKeys uint64 `json:"checkpointKeys"`
}

// met is the target: failover within leaseDuration + 2 s, and no list of
// any kind (neither a LIST request nor a watch-list) of the ConfigMaps.
func (r failoverRow) met(target float64) bool {
	return r.Seconds > 0 && r.Seconds <= target && r.Lists == 0 && r.WatchLists == 0
}

// measureFailover creates n ConfigMaps in a fresh namespace and measures a
// failover at them with each standby mode, runs times; each run starts at
// another mode.
func measureFailover(e *env, n, runs int) (*failoverReport, error) {
	bin, err := kubefeedBinary(e.dir)
	if err != nil {
		return nil, err
	}
	ns := fmt.Sprintf("fo%d", time.Now().Unix()%100000)
	leaseNS := ns + "-lease"
	for _, name := range []string{ns, leaseNS} {
		if err := createNS(e.cs, name); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, name := range []string{ns, leaseNS} {
			_ = e.cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	}()
	t := time.Now()
	if err := write(e.cs, ns, n, 0); err != nil {
		return nil, fmt.Errorf("failover: create %d ConfigMaps: %w", n, err)
	}
	fmt.Printf("failover: %d ConfigMaps created in %.0f s\n", n, time.Since(t).Seconds())
	rep := &failoverReport{Date: time.Now().UTC().Format(time.RFC3339), Objects: n,
		LeaseSeconds: failoverLease.Seconds(), TargetSeconds: failoverTarget.Seconds(), RetrySeconds: failoverRetry.Seconds()}
	for r := 0; r < runs; r++ {
		k := r % len(failoverModes)
		for _, mode := range append(append([]string(nil), failoverModes[k:]...), failoverModes[:k]...) {
			row, err := measureFailoverMode(e, bin, mode, ns, leaseNS, r, n)
			if err != nil {
				return nil, fmt.Errorf("failover %s, run %d: %w", mode, r+1, err)
			}
			printFailoverRow(rep, row, n)
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, nil
}

// printFailoverRow prints one mode's run as it is measured.
func printFailoverRow(rep *failoverReport, row failoverRow, n int) {
	met := "no"
	if row.met(rep.TargetSeconds) {
		met = "yes"
	}
	fmt.Printf("failover %s #%d, %d objects: %5.1f s to the first new change (leader after %.1f s), %g LIST + %g watch-list (%g watch events), standby RSS %.0f → %.0f MiB (peak %.0f), %.1f CPU-s; target ≤ %g s and no list: %s; /readyz before: %q\n",
		row.Standby, row.Run+1, n, row.Seconds, row.LeaderSeconds, row.Lists, row.WatchLists, row.WatchEvents, row.RSSBeforeMiB, row.RSSAfterMiB, row.PeakRSSMiB, row.CPUSeconds, rep.TargetSeconds, met, row.Readyz)
}

// measureFailoverMode is one standby mode's run, on a nats-server, stream,
// bucket and Lease of its own.
func measureFailoverMode(e *env, bin, mode, ns, leaseNS string, run, n int) (failoverRow, error) {
	row := failoverRow{Standby: mode, Run: run}
	ctx := context.Background()
	dir := filepath.Join(e.dir, fmt.Sprintf("failover-%s-%d", mode, run))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	srv, err := natstest.Start(natstest.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return row, err
	}
	defer srv.Shutdown()
	const stream = "KUBEFEED_FO"
	bucket := "kf-failover-" + mode
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		return row, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return row, err
	}
	// The API server's metrics, read as JSON rather than the writer's
	// protobuf (the text format either way, but plainly asked for).
	metricsClient, err := kubernetes.NewForConfig(e.cp.Config())
	if err != nil {
		return row, err
	}
	apiMetrics := func() (apiCounts, error) {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := metricsClient.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(mctx)
		if err != nil {
			return apiCounts{}, fmt.Errorf("API server /metrics: %w", err)
		}
		return readAPICounts(string(b), "configmaps"), nil
	}

	replica := func(name string) (*kubefeedProc, int, error) {
		port, err := freeTCPPort()
		if err != nil {
			return nil, 0, err
		}
		cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: bench
watch:
  - resource: configmaps
    namespaces: [%s]
sinks:
  - name: js
    jetstream: {servers: [%s], stream: %s, provision: {duplicateWindow: 2m}}
checkpoint:
  jetstream: {servers: [%s], bucket: %s}
leaderElection: {enabled: true, namespace: %s, name: kf-%s-%d, standby: %s}
metrics: {address: "127.0.0.1:%d"}
`, ns, srv.URL(), stream, srv.URL(), bucket, leaseNS, mode, run, mode, port)
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, 0, err
		}
		k, err := spawnKubefeed(bin, path, e.cp.Kubeconfig())
		return k, port, err
	}

	// Replica A: the leader, synced, its checkpoint flushed.
	a, aPort, err := replica("a")
	if err != nil {
		return row, err
	}
	defer a.kill()
	if _, err := a.waitLog("caches synced; delivering", 0, failoverTimeout); err != nil {
		return row, fmt.Errorf("replica A: %w", err)
	}
	// A flush that began after the sync has ended, and the bucket holds a
	// record of every object (a flush begins every second; one in
	// progress at the sync may have missed some, and one that overran
	// its bound left the rest to the next).
	f0 := scrapeMetric(aPort, "kubefeed_checkpoint_flushes_total")
	keys := func() uint64 {
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if st, err := js.Stream(kctx, "KV_"+bucket); err == nil {
			if info, err := st.Info(kctx); err == nil {
				return info.State.Msgs
			}
		}
		return 0
	}
	if err := waitFor(failoverTimeout, func() (bool, error) {
		if !a.running() {
			return false, fmt.Errorf("replica A exited:\n%s", a.logTail())
		}
		return scrapeMetric(aPort, "kubefeed_checkpoint_flushes_total") >= f0+2 && keys() >= uint64(n) &&
			scrapeMetric(aPort, "kubefeed_checkpoint_lag_seconds") < 2, nil
	}); err != nil {
		return row, fmt.Errorf("replica A's checkpoint flush (%d of %d records in the bucket): %w\n%s", keys(), n, err, a.logTail())
	}
	row.CheckpointKeys = keys()

	// Every event stored from now on, with the stream's timestamp.
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return row, fmt.Errorf("stream %s (provisioned by replica A): %w", stream, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return row, err
	}
	probeName := "c0"
	probeMark := fmt.Sprintf("%s-%d-", mode, run)
	delivered := make(chan time.Time, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if !isProbe(m.Data(), probeName, probeMark) {
			return
		}
		t := time.Now()
		if md, err := m.Metadata(); err == nil {
			t = md.Timestamp
		}
		select {
		case delivered <- t:
		default:
		}
	})
	if err != nil {
		return row, err
	}
	defer cc.Stop()

	// Replica B: standing by (and, warm, following the checkpoint).
	s0, err := apiMetrics()
	if err != nil {
		return row, err
	}
	b, bPort, err := replica("b")
	if err != nil {
		return row, err
	}
	defer b.kill()
	if _, err := b.waitLog("standing by", 0, 2*time.Minute); err != nil {
		return row, fmt.Errorf("replica B: %w", err)
	}
	ready := func() string {
		resp, err := benchHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", bPort))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(body))
	}
	// Warm: /readyz 200 "standby, warm" (not "standby, warming: …",
	// a 503 while it syncs or reaches the checkpoint).
	isWarm := func(readyz string) bool { return readyz == "standby, warm" }
	start := time.Now()
	row.Readyz = ready()
	if mode == "warm" {
		for !isWarm(row.Readyz) && time.Since(start) < *failoverWarm {
			if !b.running() {
				return row, fmt.Errorf("replica B exited:\n%s", b.logTail())
			}
			time.Sleep(250 * time.Millisecond)
			row.Readyz = ready()
		}
		row.Warm = isWarm(row.Readyz)
		row.WarmWaitSeconds = time.Since(start).Seconds()
		if !row.Warm {
			fmt.Printf("failover warm: replica B's /readyz did not say \"standby, warm\" within %s (it says %q); measured as it is\n", *failoverWarm, row.Readyz)
		}
	}
	// Let a warm standby's first checkpoint reads settle before the
	// baseline is taken (and a cold one idle just as long).
	time.Sleep(2 * time.Second)
	if row.RSSBeforeMiB, err = procStatusMiB(b.pid(), "VmRSS"); err != nil {
		return row, err
	}
	s1, err := apiMetrics()
	if err != nil {
		return row, err
	}
	cpu0, err := procCPUSeconds(b.pid())
	if err != nil {
		return row, err
	}
	bLog := b.logLen()

	// The kill, and the probe from that moment on.
	t0 := time.Now()
	a.kill()
	probeCtx, stopProbe := context.WithCancel(ctx)
	var (
		probeMu   sync.Mutex
		probes    int
		probeErrs []string
	)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			patch := fmt.Sprintf(`{"data":{"probe":"%s%d"}}`, probeMark, seq)
			pctx, cancel := context.WithTimeout(probeCtx, 5*time.Second)
			_, err := e.cs.CoreV1().ConfigMaps(ns).Patch(pctx, probeName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			cancel()
			probeMu.Lock()
			if err == nil {
				probes++
			} else if probeCtx.Err() == nil && len(probeErrs) < 5 {
				probeErrs = append(probeErrs, err.Error())
			}
			probeMu.Unlock()
			select {
			case <-probeCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { stopProbe(); <-probeDone }()
	var leaderAt, syncedAt time.Time
	logSeen := make(chan struct{})
	go func() {
		defer close(logSeen)
		leaderAt, _ = b.waitLog("became the leader", bLog, failoverTimeout)
		syncedAt, _ = b.waitLog("caches synced; delivering", bLog, 5*time.Second)
	}()
	var t1 time.Time
	select {
	case t1 = <-delivered:
	case <-time.After(failoverTimeout):
		probeMu.Lock()
		defer probeMu.Unlock()
		return row, fmt.Errorf("no probe change in the stream %s after the leader was killed (%d probes written, errors: %q); replica B:\n%s",
			failoverTimeout, probes, probeErrs, b.logTail())
	}
	row.Seconds = t1.Sub(t0).Seconds()
	row.RSSAfterMiB, _ = procStatusMiB(b.pid(), "VmRSS")
	row.PeakRSSMiB, _ = procStatusMiB(b.pid(), "VmHWM")
	if cpu1, err := procCPUSeconds(b.pid()); err == nil {
		row.CPUSeconds = cpu1 - cpu0
	}
	stopProbe()
	<-probeDone
	probeMu.Lock()
	row.Probes = probes
	probeMu.Unlock()
	// A watch-list is counted when its initial events are all sent, and
	// a LIST when it is answered: both before B can deliver anything.
	s2, err := apiMetrics()
	if err != nil {
		return row, err
	}
	row.Lists, row.WatchLists, row.WatchEvents = s2.Lists-s1.Lists, s2.WatchLists-s1.WatchLists, s2.WatchEvents-s1.WatchEvents
	row.StandbyLists, row.StandbyWatchLists = s1.Lists-s0.Lists, s1.WatchLists-s0.WatchLists
	<-logSeen
	if !leaderAt.IsZero() {
		row.LeaderSeconds = leaderAt.Sub(t0).Seconds()
	}
	if !syncedAt.IsZero() {
		row.SyncedSeconds = syncedAt.Sub(t0).Seconds()
	}
	b.stop()
	return row, nil
}

// isProbe tells whether a structured CloudEvent is a change of the probe
// ConfigMap name whose data.probe value starts with mark.
func isProbe(data []byte, name, mark string) bool {
	var ev struct {
		Data struct {
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Data map[string]string `json:"data"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return false
	}
	o := ev.Data.Object
	return o.Metadata.Name == name && strings.HasPrefix(o.Data["probe"], mark)
}

// apiCounts are the API server's counters of one resource.
type apiCounts struct {
	Lists, WatchLists, WatchEvents float64
}

// readAPICounts reads the counters of resource from the API server's
// /metrics text: LIST requests (any code, scope or version), completed
// watch-lists and watch events sent.
func readAPICounts(text, resource string) apiCounts {
	return apiCounts{
		Lists:       sumMetric(text, "apiserver_request_total", map[string]string{"verb": "LIST", "resource": resource}),
		WatchLists:  sumMetric(text, "apiserver_watch_list_duration_seconds_count", map[string]string{"resource": resource}),
		WatchEvents: sumMetric(text, "apiserver_watch_events_total", map[string]string{"resource": resource}),
	}
}

// sumMetric sums the samples of metric name in a Prometheus text
// exposition whose labels include every label of match.
func sumMetric(text, name string, match map[string]string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric, or a longer name
		}
		labels := map[string]string{}
		if rest[0] == '{' {
			var ok bool
			if labels, rest, ok = parseLabels(rest[1:]); !ok {
				continue
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		all := true
		for k, want := range match {
			if labels[k] != want {
				all = false
				break
			}
		}
		if all {
			sum += v
		}
	}
	return sum
}

// parseLabels reads `k="v",...}` (the text after a metric's `{`): the
// labels, with \\, \" and \n unescaped, and the rest after the `}`.
func parseLabels(s string) (map[string]string, string, bool) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], true
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(v, `"`) {
			return nil, "", false
		}
		var b strings.Builder
		i := 1
		for ; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(v[i])
				}
				continue
			}
			b.WriteByte(v[i])
		}
		if i >= len(v) {
			return nil, "", false
		}
		labels[strings.TrimSpace(k)] = b.String()
		s = v[i+1:]
	}
}

// procStatusMiB reads a size field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return kb / 1024, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// waitFor polls cond every 100 ms until it holds, fails, or timeout
// passes.
func waitFor(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("not within " + timeout.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
