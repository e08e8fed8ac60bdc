// Command benchrun is `make bench`: it starts the local control plane and a
// nats-server, runs a bare client-go informer and kubefeed (to a discarding
// sink, the file sink and JetStream) as separate processes on the same
// bursts, and writes docs/benchmarks.md, .json, .svg and .txt. It also measures
// kubefeed's Kafka sink against a bare producer on an in-process kfake
// broker (kafka.go). The Events mode (events.go) follows: core Events at a
// steady ~300/s and as a burst, to a typed protobuf informer and to kubefeed
// (file, JetStream, file with enrichment), and 20k cached Events. The
// failover mode (failover.go) comes last: two replicas of kubefeed with
// leader election, the leader SIGKILLed at 100k cached ConfigMaps, with a
// cold and with a warm standby; then the sharding mode (sharding.go): one
// replica against 3 replicas × 12 shards, with the API server's
// ShardedListAndWatch gate off and on, at 100k ConfigMaps.
//
// With -net it also puts a TCP delay proxy (test/netdelay) between
// kubefeed and JetStream and a webhook receiver, and compares kubefeed's
// drain rate with each sink's own ceiling through the same link.
//
//	benchrun [-n 5000] [-runs 3] [-mem 100000] [-net 20000] [-delays 0,1,2] [-kafka 20000] [-out docs] [-events-only]
//	benchrun -kafka-only -kafka 10000 [-out docs]
//	benchrun -events-only [-out docs]    (the Events mode into an existing report)
//	benchrun -gobench-only [-out docs]   (the in-process benchmarks into an existing report)
//	benchrun -delete-only [-delete 10000] [-delete-runs 1] [-out docs]   (deletecollection per checkpoint mode into an existing report)
//	benchrun -failover-only [-failover 100000] [-failover-runs 3] [-out docs]   (leader SIGKILL → failover, cold and warm standby, into an existing report)
//	benchrun -sharding-only [-sharding 100000] [-sharding-runs 3] [-out docs]   (1 replica vs 3 × 12 shards, gate off and on, into an existing report)
//	benchrun -benchfmt docs/benchmarks.json   (prints its benchmarks.txt; measures nothing)
//
// The report's prose is report.tmpl; report.go computes what it shows
// (with the medians and ratios of stats.go), and -render renders it again
// from a benchmarks.json. benchmarks.txt is the same numbers in the Go
// benchmark format (benchfmt.go), for benchstat: `make bench-compare
// OLD=old/benchmarks.json` compares a run made before a change with
// docs/benchmarks.json.
//
// BENCH_CPUPROFILE=dir writes a CPU profile of every agent's measured part,
// BENCH_ALLOCPROFILE=dir what it allocated, BENCH_LATDUMP=dir each
// acknowledged event's hops (created → rendered → handed over → acked).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		n, _ := strconv.Atoi(os.Args[7])
		if err := agent(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], n); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", 5000, "changes per burst")
	runs := flag.Int("runs", 3, "runs per mode (medians are reported)")
	mem := flag.Int("mem", 100000, "cached objects for the memory comparison (0: skip)")
	out := flag.String("out", "docs", "where to write benchmarks.md/.json/.svg/.txt")
	from := flag.String("render", "", "only render the report again from this benchmarks.json")
	benchFmt := flag.String("benchfmt", "", "only print this benchmarks.json in the Go benchmark format (as benchmarks.txt), for benchstat")
	memOnly := flag.Bool("mem-only", false, "measure only memory, print it, write nothing")
	steadyInto := flag.String("steady-into", "", "with -steady-only: put the steady rows into this directory's benchmarks.json and render its report again")
	steadyOnly := flag.Bool("steady-only", false, "measure only the steady rates to JetStream (latency), print them, write nothing")
	netOnly := flag.Bool("net-only", false, "measure only the network runs (drains through the delay proxy), print them, write nothing")
	eventsOnly := flag.Bool("events-only", false, "run only the Events mode and add it to the report in -out (its benchmarks.json is kept)")
	goBenchOnly := flag.Bool("gobench-only", false, "run only the in-process benchmarks (go test -bench) and put them into the report in -out (its benchmarks.json is kept)")
	netN := flag.Int("net", 20000, "objects drained through the delay proxy per network run (0: skip)")
	delayList := flag.String("delays", "0,1,2", "milliseconds of delay each way for the network runs")
	flag.Parse()
	var err error
	for _, f := range strings.Split(*delayList, ",") {
		ms, perr := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if perr != nil {
			err = fmt.Errorf("-delays: %q is not a number of milliseconds", f)
			break
		}
		netDelays = append(netDelays, time.Duration(ms*float64(time.Millisecond)))
	}
	netObjects = *netN
	switch {
	case err != nil:
	case *benchFmt != "":
		var rep report
		if rep, err = readReport(*benchFmt, false); err == nil {
			err = writeBenchfmt(os.Stdout, rep)
		}
	case *from != "":
		var rep report
		if rep, err = readReport(*from, false); err == nil {
			err = writeReport(rep, *out)
		}
	case *goBenchOnly:
		var rep report
		if rep, err = readReport(filepath.Join(*out, "benchmarks.json"), false); err == nil {
			rep.GoBench = goBench()
			err = writeReport(rep, *out)
		}
	case *kafkaOnly && *kafkaObjects <= 0:
		err = errors.New("-kafka-only needs -kafka N with N > 0")
	case *kafkaOnly:
		err = into(*out, func(e *env, rep *report) (err error) {
			rep.Kafka, err = measureKafka(e.cp, e.cs, e.ns.URL(), e.dir, "kafka", *kafkaObjects)
			return err
		})
	case *otlpOnly && *otlpObjects <= 0:
		err = errors.New("-otlp-only needs -otlp N with N > 0")
	case *otlpOnly:
		err = into(*out, func(e *env, rep *report) (err error) {
			rep.OTLP, err = measureOTLP(e.cp, e.cs, e.dir, "otlp", *otlpObjects)
			return err
		})
	case *deleteOnly && *deleteObjects <= 0:
		err = errors.New("-delete-only needs -delete N with N > 0")
	case *deleteOnly:
		err = into(*out, func(e *env, rep *report) (err error) {
			rep.Delete, err = measureDeletes(e, *deleteObjects, *deleteRuns)
			return err
		})
	case *failoverOnly && *failoverObjects <= 0:
		err = errors.New("-failover-only needs -failover N with N > 0")
	case *failoverOnly:
		err = into(*out, func(e *env, rep *report) (err error) {
			rep.Failover, err = measureFailover(e, *failoverObjects, *failoverRuns)
			return err
		})
	case *shardingOnly && *shardingObjects <= 0:
		err = errors.New("-sharding-only needs -sharding N with N > 0")
	case *shardingOnly:
		err = into(*out, func(e *env, rep *report) (err error) {
			rep.Sharding, err = measureSharding(e, *shardingObjects, *shardingRuns)
			return err
		})
	case *eventsOnly:
		err = into(*out, func(e *env, rep *report) error {
			rep.Events, rep.EventsN = map[string][]result{}, *n
			return runEvents(e.cp, e.cs, e.ns.URL(), e.dir, *n, *eventsRuns, *mem, rep)
		})
	default:
		if *memOnly {
			*runs, *n, *out, netObjects = 0, 0, "", 0
		}
		if *steadyOnly {
			onlySteady = true
			steadyTo = *steadyInto
			*mem, *out, netObjects, *kafkaObjects = 0, "", 0, 0
		}
		if *netOnly {
			onlyNet = true
			*mem, *out, *kafkaObjects = 0, "", 0
		}
		err = run(*n, *runs, *mem, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

// into is a -*-only run: it measures on a control plane of its own and,
// with out set, puts what it measured into out/benchmarks.json (the rest
// kept) and renders the report again.
func into(out string, measure func(e *env, rep *report) error) error {
	var rep report
	if out != "" {
		var err error
		if rep, err = readReport(filepath.Join(out, "benchmarks.json"), true); err != nil {
			return err
		}
	}
	e, err := startEnv()
	if err != nil {
		return err
	}
	defer e.stop()
	if err := measure(e, &rep); err != nil {
		return err
	}
	if rep.KubeAPIServer == "" {
		rep.KubeAPIServer = serverVersion(e.cs)
	}
	if out == "" {
		return nil
	}
	if rep.Burst == nil {
		rep.Burst = map[string][]result{}
	}
	return writeReport(rep, out)
}

type report struct {
	Date    string `json:"date"`
	Machine string `json:"machine"`
	// KubeAPIServer is the control plane's version (reports written
	// before it was recorded have none).
	KubeAPIServer string              `json:"kubeAPIServer,omitempty"`
	Burst         map[string][]result `json:"burst"`
	Steady        []result            `json:"steady"`
	// SteadyBare: a bare informer's latency from creation to its
	// notification, at the same rates in the same run.
	SteadyBare []result          `json:"steadyBare,omitempty"`
	Memory     map[string]result `json:"memory"`
	Emit       *result           `json:"emit,omitempty"`
	// Events holds the Events mode by "<load>/<mode>" (events.go).
	Events  map[string][]result `json:"events,omitempty"`
	EventsN int                 `json:"eventsN,omitempty"`
	// EventsDate is when the Events mode ran (-events-only keeps Date).
	EventsDate string       `json:"eventsDate,omitempty"`
	Network    []netRow     `json:"network,omitempty"`
	GoBench    string       `json:"goBench"`
	Kafka      *kafkaReport `json:"kafka,omitempty"`
	// OTLP: kubefeed → Collector next to the k8sobjects receiver (otlp.go).
	OTLP *otlpReport `json:"otlp,omitempty"`
	// Delete: one deletecollection per checkpoint mode (deletecollection.go).
	Delete *deleteReport `json:"deletecollection,omitempty"`
	// Failover: the leader SIGKILLed, per standby mode (failover.go).
	Failover *failoverReport `json:"failover,omitempty"`
	// Sharding: one replica against 3 × 12 shards (sharding.go).
	Sharding *shardingReport `json:"sharding,omitempty"`
}

// onlySteady: -steady-only (steadyTo: -steady-into); onlyNet: -net-only.
var (
	onlySteady, onlyNet bool
	steadyTo            string
)

// The network runs: objects drained per run, and delays each way.
var (
	netObjects int
	netDelays  []time.Duration
)

// env is what a benchmark run measures against: a control plane, a
// scratch directory, NATS with JetStream, and a writer's clientset.
type env struct {
	cp  *cluster.ControlPlane
	dir string
	ns  *natstest.Server
	cs  *kubernetes.Clientset
}

// startEnv starts the environment; stop ends it.
func startEnv() (*env, error) {
	cp, err := cluster.Start(cluster.Options{})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubefeed-bench-")
	if err != nil {
		cp.Stop()
		return nil, err
	}
	ns, err := natstest.Start(natstest.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		cp.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	wc := cp.Config()
	wc.QPS, wc.Burst = 20000, 20000 // the writer must not be the limit
	// Protobuf, as controllers write: the writer's requests then cost the
	// API server (on the same 2 cores as everything measured) least.
	wc.ContentType = "application/vnd.kubernetes.protobuf"
	wc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return &env{cp: cp, dir: dir, ns: ns, cs: kubernetes.NewForConfigOrDie(wc)}, nil
}

func (e *env) stop() {
	e.ns.Shutdown()
	e.cp.Stop()
	os.RemoveAll(e.dir)
}

func run(n, runs, mem int, out string) error {
	e, err := startEnv()
	if err != nil {
		return err
	}
	defer e.stop()
	cp, dir, ns, cs := e.cp, e.dir, e.ns, e.cs
	rep := report{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine(), KubeAPIServer: serverVersion(cs),
		Burst: map[string][]result{}, Memory: map[string]result{}}
	seq := 0
	for r := 0; r < runs && !onlySteady && !onlyNet; r++ {
		for _, mode := range burstModes {
			seq++
			name := fmt.Sprintf("b%d", seq)
			res, err := measure(cp, cs, ns.URL(), dir, mode, name, n, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			fmt.Printf("burst %-20s %7.0f changes/s  %.3f CPU-s/1k  %6.1f MiB\n", mode, res.Rate, res.CPUPer1k, res.RSSMiB)
			rep.Burst[mode] = append(rep.Burst[mode], res)
		}
	}
	for _, rate := range []int{250, 500, 1000} {
		if runs == 0 || onlyNet {
			break
		}
		seq++
		// Seven seconds at the rate: the first is a warm-up (see write),
		// the latency is taken over the next six.
		res, err := measure(cp, cs, ns.URL(), dir, "kubefeed-jetstream", fmt.Sprintf("s%d", seq), rate*7, rate)
		if err != nil {
			return err
		}
		res.Rate = float64(rate)
		fmt.Printf("steady %4d/s to JetStream: p50 %.1f ms, p99 %.1f ms (kubefeed's own p99, notification → PubAck: ≤ %g ms; create request p99 %.1f ms)\n", rate, res.P50Millis, res.P99Millis, res.OwnP99Millis, res.CreateP99Millis)
		rep.Steady = append(rep.Steady, res)
		seq++
		bare, err := measure(cp, cs, ns.URL(), dir, "bare-latency", fmt.Sprintf("s%d", seq), rate*7, rate)
		if err != nil {
			return err
		}
		bare.Rate = float64(rate)
		fmt.Printf("steady %4d/s bare informer:  p50 %.1f ms, p99 %.1f ms (create request p99 %.1f ms)\n", rate, bare.P50Millis, bare.P99Millis, bare.CreateP99Millis)
		rep.SteadyBare = append(rep.SteadyBare, bare)
	}
	if netObjects > 0 {
		rows, err := network(cp, cs, ns.URL(), dir, netObjects, *netRuns, netDelays)
		if err != nil {
			return err
		}
		rep.Network = rows
	}
	if mem > 0 {
		seq++
		name := fmt.Sprintf("m%d", seq)
		if err := createNS(cs, name); err != nil {
			return err
		}
		if err := write(cs, name, mem, 0); err != nil {
			return err
		}
		for _, mode := range []string{"bare", "kubefeed-discard"} {
			res, err := startAgent(cp, ns.URL(), dir, mode, name, 0, nil)
			if err != nil {
				return err
			}
			fmt.Printf("memory %-20s %d objects: %.1f MiB\n", mode, mem, res.RSSMiB)
			res.Objects = mem
			rep.Memory[mode] = res
		}
		// initialList: emit drains the existing objects as added events.
		res, err := startAgent(cp, ns.URL(), dir, "kubefeed-emit", name, mem, nil)
		if err != nil {
			return err
		}
		fmt.Printf("initialList: emit drained %d objects at %.0f/s\n", mem, res.Rate)
		rep.Emit = &res
	}
	if *kafkaObjects > 0 && runs > 0 {
		seq++
		if rep.Kafka, err = measureKafka(cp, cs, ns.URL(), dir, fmt.Sprintf("k%d", seq), *kafkaObjects); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	if *otlpObjects > 0 && runs > 0 && !onlySteady && !onlyNet {
		seq++
		if rep.OTLP, err = measureOTLP(cp, cs, dir, fmt.Sprintf("o%d", seq), *otlpObjects); err != nil {
			return fmt.Errorf("otlp: %w", err)
		}
	}
	if *deleteObjects > 0 && runs > 0 && !onlySteady && !onlyNet {
		if rep.Delete, err = measureDeletes(e, *deleteObjects, *deleteRuns); err != nil {
			return err
		}
	}
	if steadyTo != "" {
		return putSteady(rep, steadyTo)
	}
	if runs > 0 && !onlySteady && !onlyNet {
		rep.EventsN = n
		if err := runEvents(cp, cs, ns.URL(), dir, n, *eventsRuns, mem, &rep); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	if *failoverObjects > 0 && runs > 0 && !onlySteady && !onlyNet {
		if rep.Failover, err = measureFailover(e, *failoverObjects, *failoverRuns); err != nil {
			return err
		}
	}
	if *shardingObjects > 0 && runs > 0 && !onlySteady && !onlyNet {
		if rep.Sharding, err = measureSharding(e, *shardingObjects, *shardingRuns); err != nil {
			return err
		}
	}
	if out == "" {
		return nil
	}
	rep.GoBench = goBench()
	return writeReport(rep, out)
}

// goBench runs the in-process benchmarks: the per-object ones 3000 times,
// those of a whole stream of 2,000 Events (decoding, the protobuf
// comparison) 20 times, the attribution pair 7 rounds of 3000.
func goBench() string {
	gb, _ := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-skip", "WatchDecode|EventsProtobuf|Attribution", "-benchmem", "-benchtime", "3000x", "./exporter/", "./jsonpatch/").CombinedOutput()
	gs, _ := exec.Command("go", "test", "-run", "^$", "-bench", "WatchDecode|EventsProtobuf", "-benchmem", "-benchtime", "20x", "./exporter/").CombinedOutput()
	// The attribution target is a ratio of two runs: 7 rounds of the pair,
	// each round off then on (go test -count would run every off first).
	var ga []byte
	for range 7 {
		out, _ := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkAttribution$", "-benchmem", "-benchtime", "3000x", "./exporter/").CombinedOutput()
		ga = append(ga, out...)
	}
	return string(gb) + "\n(stream decoding, 2,000 core Events per op)\n" + string(gs) + "\n(attribution: 7 rounds of off, then on)\n" + string(ga)
}

func machine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
			break
		}
	}
	out, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s, %s cores", model, strings.TrimSpace(string(out)))
}

// serverVersion is the API server's version ("" when it does not say).
func serverVersion(cs *kubernetes.Clientset) string {
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return ""
	}
	return v.GitVersion
}

func createNS(cs *kubernetes.Clientset, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// measure starts an agent in a fresh namespace, then writes n ConfigMaps
// (at rate per second, or as fast as 32 writers go when rate is 0).
func measure(cp *cluster.ControlPlane, cs *kubernetes.Clientset, natsURL, dir, mode, name string, n, rate int) (result, error) {
	if err := createNS(cs, name); err != nil {
		return result{}, err
	}
	var created []float64
	res, err := startAgent(cp, natsURL, dir, mode, name, n, func() (err error) {
		created, err = writeTimed(cs, name, n, rate)
		return err
	})
	res.CreateP99Millis = quantile(created, 99)
	return res, err
}

func startAgent(cp *cluster.ControlPlane, natsURL, dir, mode, ns string, n int, load func() error) (result, error) {
	return startAgentRun(cp, natsURL, dir, mode, ns, ns, n, load)
}

// startAgentRun starts an agent whose working directory (and JetStream
// stream) is named run.
func startAgentRun(cp *cluster.ControlPlane, natsURL, dir, mode, ns, run string, n int, load func() error) (result, error) {
	self, _ := os.Executable()
	adir := filepath.Join(dir, run)
	_ = os.MkdirAll(adir, 0o755)
	cmd := exec.Command(self, "agent", mode, cp.Kubeconfig(), natsURL, ns, adir, strconv.Itoa(n))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "READY" {
		return result{}, fmt.Errorf("agent %s did not start", mode)
	}
	if load != nil {
		if err := load(); err != nil {
			return result{}, err
		}
	}
	if !sc.Scan() {
		return result{}, fmt.Errorf("agent %s reported nothing", mode)
	}
	var r result
	return r, json.Unmarshal(sc.Bytes(), &r)
}

func write(cs *kubernetes.Clientset, ns string, n, rate int) error {
	_, err := writeTimed(cs, ns, n, rate)
	return err
}

// writeTimed is write that, at a steady rate, also returns how long each
// stamped create request took (ms): the API server's own write path,
// which every notification of the object comes after.
func writeTimed(cs *kubernetes.Clientset, ns string, n, rate int) ([]float64, error) {
	data := map[string]string{"payload": strings.Repeat("x", 900)}
	var mu sync.Mutex
	var took []float64
	err := paced(n, rate, 32, func(i int) error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i),
			Annotations: map[string]string{"bench/created": strconv.FormatInt(time.Now().UnixNano(), 10)}}, Data: data}
		if rate > 0 && i < rate {
			// The first second at a steady rate warms the path up (the
			// API server's first writes to the namespace, the first
			// watch events): unstamped, so no latency is taken from it.
			cm.Annotations = map[string]string{"bench/warmup": "true"}
		}
		t0 := time.Now()
		_, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{})
		if err == nil && rate > 0 && i >= rate {
			ms := float64(time.Since(t0)) / float64(time.Millisecond)
			mu.Lock()
			took = append(took, ms)
			mu.Unlock()
		}
		return err
	})
	return took, err
}

// paced calls create for 0..n-1 from writers goroutines, at rate per
// second (0: as fast as they go), and returns the first error.
func paced(n, rate, writers int, create func(i int) error) error {
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := create(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		tick = t.C
	}
	for i := 0; i < n; i++ {
		if tick != nil {
			<-tick
		}
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// putSteady replaces the steady rows of dir/benchmarks.json with got's and
// renders dir's report again.
func putSteady(got report, dir string) error {
	rep, err := readReport(filepath.Join(dir, "benchmarks.json"), false)
	if err != nil {
		return fmt.Errorf("-steady-into: %w", err)
	}
	rep.Steady, rep.SteadyBare = got.Steady, got.SteadyBare
	return writeReport(rep, dir)
}

// readReport reads a benchmarks.json; missingOK: a file that is not there
// is an empty report.
func readReport(path string, missingOK bool) (report, error) {
	var rep report
	b, err := os.ReadFile(path)
	if missingOK && errors.Is(err, fs.ErrNotExist) {
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}
