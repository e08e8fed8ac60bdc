package main

// OTLP: the CPU one change costs when kubefeed feeds an OpenTelemetry
// Collector (kubefeed's process, plus the Collector's OTLP receiver and
// file exporter), next to the Collector's own k8sobjects receiver watching
// the same kind of changes into the same file exporter. The Collector is
// test/tools/otelcol (v0.152.0), a process of its own; its CPU is read
// from /proc, before and after the changes.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/otlp"
	"github.com/kubefeed/kubefeed/test/cluster"
)

var (
	otlpObjects = flag.Int("otlp", 5000, "ConfigMaps created for the OTLP comparison (kubefeed → Collector vs the Collector's k8sobjects receiver; 0: skip)")
	otlpOnly    = flag.Bool("otlp-only", false, "measure only the OTLP comparison; with -out, add it to out/benchmarks.json and render the report again")
)

// otlpTimeout bounds the wait for the k8sobjects receiver's records.
const otlpTimeout = 5 * time.Minute

// otlpRounds: both sides are measured this many times, in turn, since the
// shared machine's load drifts over minutes; the report holds the round
// with the median ratio.
const otlpRounds = 3

// otlpReport is the OTLP section of the report.
type otlpReport struct {
	// Kubefeed: the agent with the OTLP sink (gRPC, k8sobjects shape),
	// creation of the first to the last acknowledged change.
	Kubefeed result `json:"kubefeed"`
	// KubefeedCollector: the Collector receiving kubefeed's records (OTLP
	// receiver → file exporter) during the same changes.
	KubefeedCollector result `json:"kubefeedCollector"`
	// K8sObjects: the Collector's k8sobjects receiver (watch mode) → file
	// exporter, the same number of changes in another namespace.
	K8sObjects result `json:"k8sobjects"`
	// Rounds measured; the report holds the one with the median ratio.
	Rounds int `json:"rounds,omitempty"`
}

// ratio is kubefeed's and its Collector's CPU per change over the
// k8sobjects receiver's.
func (r *otlpReport) ratio() float64 {
	return (r.Kubefeed.CPUPer1k + r.KubefeedCollector.CPUPer1k) / r.K8sObjects.CPUPer1k
}

// collectorProc is a running Collector.
type collectorProc struct {
	cmd  *exec.Cmd
	file string
}

// cpu is the process's user and system CPU so far, in seconds.
func (c *collectorProc) cpu() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat of the collector: %q", b)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ, 100 on Linux
}

func (c *collectorProc) rssMiB() float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/statm", c.cmd.Process.Pid))
	var size, rss int64
	_, _ = fmt.Sscan(string(b), &size, &rss)
	return float64(rss*int64(os.Getpagesize())) / (1 << 20)
}

func (c *collectorProc) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// records counts the log records the file exporter wrote so far.
func (c *collectorProc) records() int {
	f, err := os.Open(c.file)
	if err != nil {
		return 0
	}
	defer f.Close()
	var u plog.JSONUnmarshaler
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		ld, err := u.UnmarshalLogs(sc.Bytes())
		if err != nil {
			break
		}
		n += ld.LogRecordCount()
	}
	return n
}

// startCollector starts the Collector with receivers (YAML under
// receivers:) into a file exporter, and waits until addr (if any) listens.
func startCollector(cp *cluster.ControlPlane, dir, name, receivers, receiverIDs, addr string) (*collectorProc, error) {
	bin, err := cluster.Binary("otelcol")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, name+".jsonl")
	cfg := "receivers:\n" + receivers + "exporters:\n  file: {path: '" + file + "', flush_interval: 100ms}\n" +
		"service:\n  telemetry:\n    metrics: {level: none}\n    logs: {level: warn}\n  pipelines:\n    logs: {receivers: [" + receiverIDs + "], exporters: [file]}\n"
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", "file:"+path)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &collectorProc{cmd: cmd, file: file}
	deadline := time.Now().Add(time.Minute)
	for addr != "" {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("the collector does not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c, nil
}

func loopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// measureOTLP runs otlpRounds rounds and returns the median one.
func measureOTLP(cp *cluster.ControlPlane, cs *kubernetes.Clientset, dir, name string, n int) (*otlpReport, error) {
	var reps []*otlpReport
	for i := range otlpRounds {
		r, err := measureOTLPOnce(cp, cs, dir, fmt.Sprintf("%s-r%d", name, i), n)
		if err != nil {
			return nil, err
		}
		reps = append(reps, r)
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].ratio() < reps[j].ratio() })
	med := reps[len(reps)/2]
	med.Rounds = len(reps)
	return med, nil
}

// measureOTLPOnce runs both sides on n created ConfigMaps each.
func measureOTLPOnce(cp *cluster.ControlPlane, cs *kubernetes.Clientset, dir, name string, n int) (*otlpReport, error) {
	rep := &otlpReport{}
	addr, err := loopbackAddr()
	if err != nil {
		return nil, err
	}
	col, err := startCollector(cp, dir, name+"-otlp", "  otlp:\n    protocols:\n      grpc: {endpoint: '"+addr+"'}\n", "otlp", addr)
	if err != nil {
		return nil, err
	}
	defer col.stop()
	ns := name + "-kubefeed"
	if err := createNS(cs, ns); err != nil {
		return nil, err
	}
	var before float64
	rep.Kubefeed, err = startAgent(cp, addr, dir, "kubefeed-otlp", ns, n, func() error {
		if before, err = col.cpu(); err != nil {
			return err
		}
		return write(cs, ns, n, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("kubefeed → collector: %w", err)
	}
	after, err := col.cpu()
	if err != nil {
		return nil, err
	}
	rep.KubefeedCollector = result{Mode: "collector (otlp receiver → file)", Objects: n, Seconds: rep.Kubefeed.Seconds, Rate: rep.Kubefeed.Rate,
		CPUPer1k: (after - before) / float64(n) * 1000, RSSMiB: col.rssMiB()}
	if got := col.records(); got < n {
		return nil, fmt.Errorf("kubefeed's collector wrote %d records, want %d", got, n)
	}

	// The k8sobjects receiver, watching a namespace of its own.
	ns2 := name + "-k8sobjects"
	if err := createNS(cs, ns2); err != nil {
		return nil, err
	}
	recv := "  k8s_objects:\n    auth_type: kubeConfig\n    objects:\n      - {name: configmaps, mode: watch, namespaces: [" + ns2 + "]}\n"
	k8s, err := startCollector(cp, dir, name+"-k8sobjects", recv, "k8s_objects", "")
	if err != nil {
		return nil, err
	}
	defer k8s.stop()
	// Its watch is up once an object's record is written: it lists first
	// and watches from there, so objects made before are not events.
	ctx, cancel := context.WithTimeout(context.Background(), otlpTimeout)
	defer cancel()
	for i := 0; k8s.records() < 1; i++ {
		if ctx.Err() != nil {
			return nil, errors.New("the k8sobjects receiver wrote nothing")
		}
		if err := writeNamed(cs, ns2, fmt.Sprintf("warmup-%d", i)); err != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // the last warm-up's record, if it comes
	base := k8s.records()
	before, err = k8s.cpu()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := write(cs, ns2, n, 0); err != nil {
		return nil, err
	}
	for k8s.records() < base+n {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the k8sobjects receiver wrote %d records of %d", k8s.records()-base, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	after, err = k8s.cpu()
	if err != nil {
		return nil, err
	}
	rep.K8sObjects = result{Mode: "collector k8sobjects receiver → file", Objects: n, Seconds: secs, Rate: float64(n) / secs,
		CPUPer1k: (after - before) / float64(n) * 1000, RSSMiB: k8s.rssMiB()}
	fmt.Printf("otlp %s: kubefeed %.3f + its collector %.3f CPU s per 1k changes; k8sobjects receiver %.3f (%.2f×)\n",
		name, rep.Kubefeed.CPUPer1k, rep.KubefeedCollector.CPUPer1k, rep.K8sObjects.CPUPer1k, rep.ratio())
	return rep, nil
}

// writeNamed creates one ~1 KiB ConfigMap named name in ns.
func writeNamed(cs *kubernetes.Clientset, ns, name string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"payload": strings.Repeat("x", 900)}}
	_, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{})
	return err
}

// otlpAgentSink is the agent's OTLP sink to the collector at addr.
func otlpAgentSink(addr string) (*otlp.Sink, error) {
	c := config.OTLPSink{Endpoint: addr}
	c.SetDefaults()
	return otlp.New(otlp.Options{Config: c, Version: "bench"})
}
