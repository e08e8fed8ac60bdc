package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// result is what an agent reports on stdout as one JSON line.
type result struct {
	Mode      string  `json:"mode"`
	Objects   int     `json:"objects"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"`
	CPUPer1k  float64 `json:"cpuSecondsPer1k"`
	RSSMiB    float64 `json:"rssMiB"`
	P50Millis float64 `json:"p50ms,omitempty"`
	P99Millis float64 `json:"p99ms,omitempty"`
	// OwnP99Millis is the p99 of kubefeed's own path, from its first
	// notification of a change to the sink's ack, read from its
	// kubefeed_delivery_latency_seconds histogram: the upper bound of the
	// bucket that holds the 99th percentile.
	OwnP99Millis float64 `json:"ownP99ms,omitempty"`
	// CreateP99Millis is the p99 of the writer's create requests at a
	// steady rate (request sent → API server's answer): the part of
	// creation → notification that the API server and etcd take before
	// any watcher can see the object.
	CreateP99Millis float64 `json:"createP99ms,omitempty"`
}

// ownP99 is the upper bound, in ms, of the bucket of reg's
// kubefeed_delivery_latency_seconds that holds the 99th percentile (0: no
// sample).
func ownP99(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "kubefeed_delivery_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			want := (h.GetSampleCount()*99 + 99) / 100
			for _, b := range h.GetBucket() {
				if h.GetSampleCount() > 0 && b.GetCumulativeCount() >= want {
					return b.GetUpperBound() * 1000
				}
			}
		}
	}
	return 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func rssMiB() float64 {
	b, _ := os.ReadFile("/proc/self/statm")
	var size, rss int64
	_, _ = fmt.Sscan(string(b), &size, &rss)
	return float64(rss*int64(os.Getpagesize())) / (1 << 20)
}

// counter counts acknowledged events and their latency from the creation
// time the driver wrote into each object.
type counter struct {
	inner sinks.Sink
	n     atomic.Int64
	// drain: the objects existed before kubefeed started (initialList:
	// emit), so a latency from their creation means nothing, and reading
	// it would put the harness's cost on kubefeed's CPU bill.
	drain bool
	mu    sync.Mutex
	lat   []float64
	// hop is, per acknowledged event (with BENCH_LATDUMP), when it was
	// created, rendered, handed to the sink and acknowledged (Unix ns).
	hop [][4]int64
}

// latDump (BENCH_LATDUMP=dir) makes an agent write each event's hops to
// dir/<mode>-<ns>.hops, in the order the acks came: where a tail comes
// from (the API server and informer, kubefeed's queue, or the sink).
var latDump = os.Getenv("BENCH_LATDUMP")

// hops records the hops of evs, acknowledged now and handed to the sink at
// published.
func (c *counter) hops(evs []*event.Event, published time.Time) {
	if c.drain {
		return // no creation latency in a drain (see drain)
	}
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range evs {
		d, ok := e.Data.(*event.ChangeData)
		if !ok {
			continue
		}
		if ts, ok := createdStamp(d.Object); ok {
			c.hop = append(c.hop, [4]int64{ts, e.Time.UnixNano(), published.UnixNano(), now})
		}
	}
}

// writeHops writes the recorded hops as milliseconds: created → rendered,
// rendered → handed over, handed over → acknowledged, and the total.
func (c *counter) writeHops(path string) error {
	c.mu.Lock() // acks of events beyond n may still come
	defer c.mu.Unlock()
	var b strings.Builder
	b.WriteString("# created-rendered rendered-published published-acked total (ms)\n")
	ms := func(d int64) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }
	for _, h := range c.hop {
		b.WriteString(ms(h[1]-h[0]) + " " + ms(h[2]-h[1]) + " " + ms(h[3]-h[2]) + " " + ms(h[3]-h[0]) + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (c *counter) Send(ctx context.Context, evs []*event.Event) error {
	if c.inner != nil {
		if err := c.inner.Send(ctx, evs); err != nil {
			return err
		}
	} else {
		for _, e := range evs {
			if _, err := event.Marshal(e); err != nil {
				return err
			}
		}
	}
	c.record(evs)
	return nil
}

// createdStamp is the bench/created annotation the writer put in obj (Unix
// ns); false when obj has none (a warm-up object) or it is not a number.
// No fmt and no copy of the annotations: this runs per event, on the
// measured process's CPU bill.
func createdStamp(obj map[string]any) (int64, bool) {
	md, _ := obj["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	created, _ := ann["bench/created"].(string)
	ts, err := strconv.ParseInt(created, 10, 64)
	return ts, err == nil
}

// record counts acknowledged events and their latency.
func (c *counter) record(evs []*event.Event) {
	if c.drain {
		c.n.Add(int64(len(evs)))
		return
	}
	now := time.Now()
	c.mu.Lock()
	for _, e := range evs {
		if d, ok := e.Data.(*event.ChangeData); ok {
			if ts, ok := createdStamp(d.Object); ok {
				c.lat = append(c.lat, float64(now.UnixNano()-ts)/1e6)
			}
		}
	}
	c.mu.Unlock()
	c.n.Add(int64(len(evs)))
}

// notified records a bare informer's latency from u's creation stamp.
func (c *counter) notified(u *unstructured.Unstructured) {
	ts, ok := createdStamp(u.Object)
	if !ok {
		return
	}
	now := time.Now()
	c.mu.Lock()
	c.lat = append(c.lat, float64(now.UnixNano()-ts)/1e6)
	c.mu.Unlock()
}

// Publish passes through the inner sink's window, counting on ack.
func (c *counter) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	as, ok := c.inner.(sinks.AsyncSink)
	if !ok {
		done(c.Send(ctx, evs))
		return nil
	}
	published := time.Now()
	return as.Publish(ctx, evs, func(err error) {
		if err == nil {
			// Hops before the count: once the agent counted n events it
			// writes them, and the last acks' must be there.
			if latDump != "" {
				c.hops(evs, published)
			}
			c.record(evs)
		}
		done(err)
	})
}

func (c *counter) Close(ctx context.Context) error {
	if c.inner != nil {
		return c.inner.Close(ctx)
	}
	return nil
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// agent watches namespace ns in one mode until it has seen n objects
// (target is the NATS URL or, for webhook modes, the receiver's URL).
func agent(mode, kubeconfig, natsURL, ns, dir string, n int) error {
	if path := os.Getenv("BENCHRUN_CPUPROFILE"); path != "" && mode != "bare" {
		// A CPU profile per agent (for finding what bounds a mode).
		// Stopped before the result is printed: the parent kills the agent
		// once it has read it.
		if f, err := os.Create(path + "." + filepath.Base(dir)); err == nil && pprof.StartCPUProfile(f) == nil {
			stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	if mode == "kafka-ceiling" {
		return kafkaCeiling(natsURL, n)
	}
	if ceiling, ok := ceilings[mode]; ok {
		return runCeiling(ceiling, natsURL, filepath.Base(dir), n)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 100
	dyn := dynamic.NewForConfigOrDie(rc)
	var start atomic.Int64
	ready := func() { fmt.Println("READY") }
	var done func() int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &counter{}
	reg := prometheus.NewRegistry() // kubefeed's own metrics, for its own latency
	events := strings.Contains(mode, "events")
	if mode == "events-bare" {
		var seen atomic.Int64
		if _, err := typedEventsInformer(ctx, rc, ns, func() {
			start.CompareAndSwap(0, time.Now().UnixNano())
			seen.Add(1)
		}); err != nil {
			return err
		}
		done = seen.Load
	} else if mode == "bare" || mode == "bare-latency" || mode == "events-bare-dynamic" {
		var seen atomic.Int64
		gvr := configMaps
		if events {
			gvr = schema.GroupVersionResource{Version: "v1", Resource: "events"}
		}
		inf := dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, ns, 0, cache.Indexers{}, nil).Informer()
		_ = inf.SetTransform(func(o any) (any, error) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
			}
			return o, nil
		})
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
			start.CompareAndSwap(0, time.Now().UnixNano())
			if mode == "bare-latency" {
				c.notified(o.(*unstructured.Unstructured))
			}
			seen.Add(1)
		}})
		go inf.Run(ctx.Done())
		cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
		done = seen.Load
	} else {
		w := config.Watch{Resource: "configmaps", Namespaces: []string{ns}}
		if events {
			w.Resource = "events"
		}
		if strings.HasSuffix(mode, "-enrich") {
			w.Enrich = config.EnrichInvolvedObject
		}
		if mode == "kubefeed-emit" || mode == "kubefeed-kafka" || mode == "kubefeed-jetstream-emit" || mode == "kubefeed-webhook-emit" {
			w.InitialList = config.InitialListEmit // a snapshot of what exists
			c.drain = true
		}
		cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Cluster: "bench", Workers: 8,
			Watch: []config.Watch{w},
			Sinks: []config.Sink{{Name: "s", Stdout: &config.StdoutSink{}}}}
		cfg.SetDefaults()
		switch mode {
		case "kubefeed-file", "kubefeed-events-file", "kubefeed-events-enrich":
			f, err := file.New(file.Options{Path: dir + "/events.jsonl", Linger: config.DefaultFileLinger}) // as kubefeed run configures it
			if err != nil {
				return err
			}
			c.inner = f
		case "kubefeed-jetstream", "kubefeed-jetstream-emit", "kubefeed-events-jetstream":
			run := filepath.Base(dir)
			jc := config.JetStreamSink{NATSConnection: config.NATSConnection{Servers: []string{natsURL}}, Stream: "BENCH_" + run, Subject: config.DefaultSubject,
				Mode: config.ModeStructured, MaxPending: 4096, Provision: &config.StreamProvision{Subjects: []string{"kubefeed.bench." + run + ".>"}}}
			jc.Subject = "kubefeed.bench." + run + ".{resource}.{change}"
			j, err := jetstream.New(ctx, jetstream.Options{Config: jc, Cluster: "bench"})
			if err != nil {
				return err
			}
			c.inner = j
		case "kubefeed-kafka":
			k, err := kafkaSink(ctx, natsURL)
			if err != nil {
				return err
			}
			c.inner = k
		case "kubefeed-otlp":
			o, err := otlpAgentSink(natsURL)
			if err != nil {
				return err
			}
			c.inner = o
		case "kubefeed-webhook-emit":
			w, err := webhook.New(webhook.Options{Config: config.WebhookSink{URL: natsURL, Mode: config.ModeStructured, Batch: webhookBatch,
				Linger: config.Duration{Duration: 50 * time.Millisecond}, MaxInFlight: 4, Timeout: config.Duration{Duration: 10 * time.Second}, FollowRedirects: config.FollowRedirectsNever}})
			if err != nil {
				return err
			}
			c.inner = w
		}
		wrapped := &startMarker{counter: c, start: &start}
		ex, err := exporter.New(exporter.Options{Config: cfg, Client: dyn, RESTConfig: rc, Metadata: metadata.NewForConfigOrDie(rc),
			Resolver: resource.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(rc)),
			Sinks:    map[string]sinks.Sink{"s": wrapped}, Logger: zap.NewNop(), Registerer: reg})
		if err != nil {
			return err
		}
		go func() { _ = ex.Run(ctx) }()
		for !ex.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		done = c.n.Load
	}
	cpuReady := cpuSeconds()
	// BENCH_CPUPROFILE=dir writes a CPU profile per agent (dir/<mode>-<ns>.pprof)
	// of the measured part.
	if d := os.Getenv("BENCH_CPUPROFILE"); d != "" && n > 0 && os.Getenv("BENCHRUN_CPUPROFILE") == "" {
		if f, err := os.Create(filepath.Join(d, mode+"-"+ns+".pprof")); err == nil && pprof.StartCPUProfile(f) == nil {
			stopProfile = func() { pprof.StopCPUProfile(); _ = f.Close() }
		}
	}
	// With BENCH_ALLOCPROFILE, what was allocated before the measured part
	// (dir/<mode>-<ns>.allocs.base: pprof -base it to see the part alone).
	// The profile is as of the last collection: one is forced first.
	if d := os.Getenv("BENCH_ALLOCPROFILE"); d != "" && n > 0 {
		runtime.GC()
		if f, err := os.Create(filepath.Join(d, mode+"-"+ns+".allocs.base")); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	ready()
	for done() < int64(n) {
		time.Sleep(2 * time.Millisecond)
	}
	if n == 0 {
		// Memory only: what the caches hold after the initial list.
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(time.Second)
		// BENCH_HEAPPROFILE=dir writes what the caches hold (dir/<mode>-<ns>.heap).
		if d := os.Getenv("BENCH_HEAPPROFILE"); d != "" {
			if f, err := os.Create(filepath.Join(d, mode+"-"+ns+".heap")); err == nil {
				_ = pprof.WriteHeapProfile(f)
				_ = f.Close()
			}
		}
		b, _ := json.Marshal(result{Mode: mode, RSSMiB: rssMiB()})
		fmt.Println(string(b))
		return nil
	}
	end := time.Now()
	stopProfile() // before the report: the driver kills the agent once it has it
	// BENCH_ALLOCPROFILE=dir writes what the agent allocated (dir/<mode>-<ns>.allocs).
	if d := os.Getenv("BENCH_ALLOCPROFILE"); d != "" {
		runtime.GC()
		if f, err := os.Create(filepath.Join(d, mode+"-"+ns+".allocs")); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	secs := end.Sub(time.Unix(0, start.Load())).Seconds()
	r := result{Mode: mode, Objects: n, Seconds: secs, Rate: float64(n) / secs, CPUPer1k: (cpuSeconds() - cpuReady) / float64(n) * 1000, RSSMiB: rssMiB()}
	if latDump != "" {
		if err := c.writeHops(filepath.Join(latDump, mode+"-"+ns+".hops")); err != nil {
			return err
		}
	}
	c.mu.Lock() // acks of events beyond n may still come
	r.P50Millis, r.P99Millis = quantile(c.lat, 50), quantile(c.lat, 99)
	c.mu.Unlock()
	if mode == "kubefeed-jetstream" {
		r.OwnP99Millis = ownP99(reg)
	}
	b, _ := json.Marshal(r)
	stopProfile()
	fmt.Println(string(b))
	return nil
}

// stopProfile ends the CPU profile BENCHRUN_CPUPROFILE asked for.
var stopProfile = func() {}

// startMarker records when the first event arrived.
type startMarker struct {
	*counter
	start *atomic.Int64
}

func (s *startMarker) Send(ctx context.Context, evs []*event.Event) error {
	s.start.CompareAndSwap(0, time.Now().UnixNano())
	return s.counter.Send(ctx, evs)
}

func (s *startMarker) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	s.start.CompareAndSwap(0, time.Now().UnixNano())
	return s.counter.Publish(ctx, evs, done)
}
