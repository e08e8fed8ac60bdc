package main

// Deletecollection: what a checkpoint costs when one deletecollection
// removes many objects at once. With a checkpoint, kubefeed makes a record
// durable ahead of each send (for a deletion, the object's final state
// marked Deleting), so that a deletion acknowledged just before a crash is
// sent again after the restart as the same event. The real kubefeed binary
// watches the ConfigMaps of a fresh namespace into a JetStream stream of
// its own, with no checkpoint, a file checkpoint (bbolt) or a JetStream KV
// checkpoint, in the same run; the objects are created while it runs (so
// each is delivered as added and checkpointed), then deleted with one
// DeleteCollection call, timed until the stream holds every deletion.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/test/cluster"
)

var (
	deleteObjects = flag.Int("delete", 10000, "ConfigMaps removed by one deletecollection, per checkpoint mode (0: skip)")
	// One run by default: a run of the three modes takes about 2.5 minutes
	// on the 2-core machine (the adds with a checkpoint are the slow part),
	// so three would add over seven minutes to make bench.
	deleteRuns = flag.Int("delete-runs", 1, "runs of the deletecollection measurement (medians are reported)")
	deleteOnly = flag.Bool("delete-only", false, "run only the deletecollection measurement; with -out, put it into out/benchmarks.json and render the report again")
)

// deleteModes are the checkpoint modes, in the order of the report; runs
// rotate it (see measureDeletes).
var deleteModes = []string{"none", "file", "jetstream"}

// deleteTimeout bounds each wait of one measurement (a liveness bound).
const deleteTimeout = 5 * time.Minute

// deleteReport is the deletecollection section of the report.
type deleteReport struct {
	Date    string `json:"date"`
	Objects int    `json:"objects"`
	// Rows holds each checkpoint mode's runs, run i of every mode in the
	// same round.
	Rows map[string][]deleteRow `json:"rows"`
}

// deleteRow is one mode's measurement in one run.
type deleteRow struct {
	// Seconds from the DeleteCollection call until the stream held every
	// deletion; Rate is Objects over it.
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	// CPUSeconds: kubefeed's user+system CPU over the same interval.
	CPUSeconds float64 `json:"cpuSeconds"`
	// CallSeconds: how long the DeleteCollection call itself took.
	CallSeconds float64 `json:"callSeconds"`
	// AddSeconds: from the first create until the stream held every added
	// event (32 writers), for context.
	AddSeconds float64 `json:"addSeconds"`
	// Flushes: checkpoint flushes (kubefeed_checkpoint_flushes_total)
	// over the deletions.
	Flushes float64 `json:"flushes,omitempty"`
	// CheckpointMiB: file: what kubefeed wrote to storage (write_bytes of
	// /proc/<pid>/io); jetstream: the payloads of the KV bucket's puts and
	// deletes, over the deletions.
	CheckpointMiB float64 `json:"checkpointMiB,omitempty"`
}

// kubefeedBinary builds cmd/kubefeed of this checkout into dir (the go
// build cache makes it quick when nothing changed).
func kubefeedBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "kubefeed")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kubefeed")
	cmd.Dir = cluster.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kubefeed: %w: %s", err, out)
	}
	return bin, nil
}

// measureDeletes runs every checkpoint mode runs times with n objects.
func measureDeletes(e *env, n, runs int) (*deleteReport, error) {
	bin, err := kubefeedBinary(e.dir)
	if err != nil {
		return nil, err
	}
	rep := &deleteReport{Date: time.Now().UTC().Format(time.RFC3339), Objects: n, Rows: map[string][]deleteRow{}}
	seq := 0
	for r := 0; r < runs; r++ {
		// Each run starts at another mode, so that no mode always follows
		// the same one (the previous run's deletions are still being
		// compacted by etcd, its stream's files written back).
		order := append(append([]string(nil), deleteModes[r%len(deleteModes):]...), deleteModes[:r%len(deleteModes)]...)
		for _, mode := range order {
			seq++
			row, err := measureDelete(e, bin, mode, seq, n)
			if err != nil {
				return nil, fmt.Errorf("deletecollection %s: %w", mode, err)
			}
			fmt.Printf("deletecollection %-9s %d objects: %6.2f s (%5.0f/s; call %.2f s), kubefeed %.2f CPU-s, %3.0f flushes, %.1f MiB checkpoint (adds took %.1f s)\n",
				mode, n, row.Seconds, row.Rate, row.CallSeconds, row.CPUSeconds, row.Flushes, row.CheckpointMiB, row.AddSeconds)
			rep.Rows[mode] = append(rep.Rows[mode], row)
		}
	}
	return rep, nil
}

// measureDelete is one mode's run: kubefeed started on a fresh namespace,
// n ConfigMaps created and delivered as added, then one DeleteCollection.
func measureDelete(e *env, bin, mode string, seq, n int) (deleteRow, error) {
	var row deleteRow
	ctx := context.Background()
	ns := fmt.Sprintf("del%d-%d", time.Now().Unix()%100000, seq)
	clusterName := fmt.Sprintf("del%d", seq) // the stream's subjects are per cluster
	stream, bucket := fmt.Sprintf("DEL%d", seq), fmt.Sprintf("kfdel%d", seq)
	adir := filepath.Join(e.dir, ns)
	if err := os.MkdirAll(adir, 0o700); err != nil {
		return row, err
	}
	defer os.RemoveAll(adir)
	if err := createNS(e.cs, ns); err != nil {
		return row, err
	}
	defer func() { _ = e.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) }()

	nc, err := nats.Connect(e.ns.URL())
	if err != nil {
		return row, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return row, err
	}
	defer func() {
		_ = js.DeleteStream(ctx, stream)
		if mode == "jetstream" {
			_ = js.DeleteKeyValue(ctx, bucket)
		}
	}()

	var ckpt string
	switch mode {
	case "file":
		ckpt = fmt.Sprintf("checkpoint:\n  file: {path: %s}\n", filepath.Join(adir, "checkpoint.db"))
	case "jetstream":
		ckpt = fmt.Sprintf("checkpoint:\n  jetstream: {servers: [%s], bucket: %s}\n", e.ns.URL(), bucket)
	}
	port, err := freeTCPPort()
	if err != nil {
		return row, err
	}
	cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: %s
watch:
  - {resource: configmaps, namespaces: [%s]}
sinks:
  - {name: js, jetstream: {servers: [%s], stream: %s, provision: {duplicateWindow: 10m}}}
metrics: {address: "127.0.0.1:%d"}
%s`, clusterName, ns, e.ns.URL(), stream, port, ckpt)
	cfgPath := filepath.Join(adir, "kubefeed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return row, err
	}
	kf, err := startKubefeed(bin, cfgPath, e.cp.Kubeconfig())
	if err != nil {
		return row, err
	}
	defer kf.stop()

	// The KV bucket's writes, counted as they are published.
	var kvBytes atomic.Int64
	if mode == "jetstream" {
		sub, err := nc.Subscribe("$KV."+bucket+".>", func(m *nats.Msg) { kvBytes.Add(int64(len(m.Data))) })
		if err != nil {
			return row, err
		}
		defer sub.Unsubscribe()
		if err := nc.Flush(); err != nil {
			return row, err
		}
	}

	count := func(change string) (uint64, error) {
		st, err := js.Stream(ctx, stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, nil // not provisioned yet
		}
		if err != nil {
			return 0, err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(fmt.Sprintf("kubefeed.%s.*.*.*.%s", clusterName, change)))
		if err != nil {
			return 0, err
		}
		var c uint64
		for _, v := range info.State.Subjects {
			c += v
		}
		return c, nil
	}
	wait := func(change string, every time.Duration) error {
		deadline := time.Now().Add(deleteTimeout)
		for {
			c, err := count(change)
			if err != nil {
				return err
			}
			if c >= uint64(n) {
				return nil
			}
			if !kf.running() {
				return fmt.Errorf("kubefeed exited with %d %s events in the stream:\n%s", c, change, kf.logTail())
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d %s events in the stream after %s:\n%s", c, n, change, deleteTimeout, kf.logTail())
			}
			time.Sleep(every)
		}
	}

	t0 := time.Now()
	if err := write(e.cs, ns, n, 0); err != nil {
		return row, err
	}
	if err := wait("added", 50*time.Millisecond); err != nil {
		return row, err
	}
	row.AddSeconds = time.Since(t0).Seconds()
	// Every delivered state in the checkpoint (it flushes every second),
	// and the API server and etcd quiet again after the burst.
	time.Sleep(2 * time.Second)

	flushes0 := scrapeMetric(port, "kubefeed_checkpoint_flushes_total")
	cpu0, err := procCPUSeconds(kf.pid())
	if err != nil {
		return row, err
	}
	io0 := procWriteBytes(kf.pid())
	kv0 := kvBytes.Load()
	start := time.Now()
	type call struct {
		took time.Duration
		err  error
	}
	callDone := make(chan call, 1)
	go func() {
		err := e.cs.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		callDone <- call{time.Since(start), err}
	}()
	if err := wait("deleted", 10*time.Millisecond); err != nil {
		return row, err
	}
	row.Seconds = time.Since(start).Seconds()
	cpu1, err := procCPUSeconds(kf.pid())
	if err != nil {
		return row, err
	}
	io1 := procWriteBytes(kf.pid())
	kv1 := kvBytes.Load()
	c := <-callDone
	if c.err != nil {
		return row, fmt.Errorf("deletecollection: %w", c.err)
	}
	row.CallSeconds = c.took.Seconds()
	row.Rate = float64(n) / row.Seconds
	row.CPUSeconds = cpu1 - cpu0
	switch mode {
	case "file":
		row.CheckpointMiB = float64(io1-io0) / (1 << 20)
	case "jetstream":
		row.CheckpointMiB = float64(kv1-kv0) / (1 << 20)
	}
	if mode != "none" {
		row.Flushes = scrapeMetric(port, "kubefeed_checkpoint_flushes_total") - flushes0
	}
	if c, err := count("deleted"); err == nil && c != uint64(n) {
		return row, fmt.Errorf("%d deleted events in the stream for %d objects", c, n)
	}
	return row, nil
}

// kubefeedProc is a running `kubefeed run`.
type kubefeedProc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

// startKubefeed runs kubefeed and waits until it has synced its caches.
func startKubefeed(bin, cfg, kubeconfig string) (*kubefeedProc, error) {
	k, err := spawnKubefeed(bin, cfg, kubeconfig)
	if err != nil {
		return nil, err
	}
	if _, err := k.waitLog("caches synced", 0, time.Minute); err != nil {
		k.stop()
		return nil, err
	}
	return k, nil
}

// spawnKubefeed runs kubefeed.
func spawnKubefeed(bin, cfg, kubeconfig string) (*kubefeedProc, error) {
	cmd := exec.Command(bin, "run", "--config", cfg, "--kubeconfig", kubeconfig, "--log-format", "console")
	k := &kubefeedProc{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(k.done) }()
	return k, nil
}

// waitLog waits until kubefeed's log, from offset from (a logLen), holds
// s, and returns when it saw it; an error when kubefeed exited or timeout
// passed first.
func (k *kubefeedProc) waitLog(s string, from int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if k.logs.containsFrom(s, from) {
			return time.Now(), nil
		}
		if !k.running() {
			return time.Time{}, fmt.Errorf("kubefeed exited before it logged %q:\n%s", s, k.logTail())
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("kubefeed did not log %q within %s:\n%s", s, timeout, k.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLen is how much kubefeed logged so far (an offset for waitLog).
func (k *kubefeedProc) logLen() int64 { return k.logs.written() }

// kill sends SIGKILL and waits for the exit.
func (k *kubefeedProc) kill() {
	_ = k.cmd.Process.Kill()
	<-k.done
}

func (k *kubefeedProc) pid() int { return k.cmd.Process.Pid }

func (k *kubefeedProc) running() bool {
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 30 s).
func (k *kubefeedProc) stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

func (k *kubefeedProc) logTail() string {
	s := k.logs.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reader.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	dropped int64 // bytes cut from the front
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the last half MiB
		cut := s.b.Len() - 1<<19
		tail := append([]byte(nil), s.b.Bytes()[cut:]...)
		s.b.Reset()
		s.b.Write(tail)
		s.dropped += int64(cut)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// written is how many bytes were ever written.
func (s *syncBuffer) written() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped + int64(s.b.Len())
}

// containsFrom tells whether what was written from offset from on (or
// what is kept of it) holds sub.
func (s *syncBuffer) containsFrom(sub string, from int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := max(from-s.dropped, 0)
	return bytes.Contains(s.b.Bytes()[min(i, int64(s.b.Len())):], []byte(sub))
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procCPUSeconds is a process's user+system CPU time, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start at field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return float64(ut+st) / 100, nil
}

// procWriteBytes is what a process caused to be written to storage
// (write_bytes of /proc/<pid>/io; 0 when unavailable).
func procWriteBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// scrapeMetric reads an unlabelled counter or gauge from kubefeed's
// /metrics (0 when absent).
func scrapeMetric(port int, name string) float64 {
	for _, l := range strings.Split(scrapeText(port), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
