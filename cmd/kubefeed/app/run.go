package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/checkpoint"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	var cfgPath, metricsAddr string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the change feed daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				cfg.Metrics.Address = metricsAddr
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runExporter(ctx, g, cfg)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the config file")
	cmd.Flags().StringVar(&metricsAddr, "metrics-address", "", "serve /metrics, /healthz and /readyz here (overrides metrics.address)")
	return cmd
}

// loadConfig loads --config, reporting problems as usage errors (exit 1).
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageErr(errors.New("--config is required"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

// runExporter wires clients, sinks and the exporter, and blocks until ctx
// ends and the exporter has drained. With leader election, only the leader
// runs the pipeline; it starts from the shared checkpoint.
func runExporter(ctx context.Context, g *globalFlags, cfg *config.Config) error {
	log, err := newLogger(g)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	rc, _, err := clientConfig(g)
	if err != nil {
		return usageErr(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	leader := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubefeed_leader", Help: "1 while this replica runs the pipeline (always 1 without leader election)."})
	reg.MustRegister(leader)
	var (
		current  atomic.Pointer[exporter.Exporter]
		follower atomic.Pointer[checkpoint.Follower] // a warm standby's
	)
	shards := &shardExporters{}
	ready := func() (bool, string) {
		if cfg.Sharding != nil {
			return shards.health()
		}
		ex := current.Load()
		if ex == nil {
			return false, "standby: not the leader"
		}
		if f := follower.Load(); f != nil && ex.Standby() {
			if ok, why := f.Following(); !ok {
				return false, "standby, warming: " + why
			}
		}
		return ex.Healthy()
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kubefeed_standby_warm",
		Help: "1 while this replica stands by warm: its caches synced and it follows the shared checkpoint, so taking the Lease lists nothing."},
		func() float64 {
			if ex := current.Load(); ex != nil && ex.Standby() {
				if ok, _ := ready(); ok {
					return 1
				}
			}
			return 0
		}))
	if cfg.Metrics.Address != "" {
		srv, err := serveHealth(cfg.Metrics, ready, reg, log)
		if err != nil {
			return runtimeErr(err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	log.Info("kubefeed starting", zap.String("version", version), zap.String("cluster", cfg.Cluster), zap.String("server", rc.Host))
	pipeline := func(ctx, sendCtx context.Context) error {
		leader.Set(1)
		defer leader.Set(0)
		return runPipeline(ctx, sendCtx, rc, cfg, log, reg, nil, func(ex *exporter.Exporter) { current.Store(ex) })
	}
	if sn := cfg.Snapshots; sn != nil && cfg.Sharding == nil {
		cs, cerr := kubernetes.NewForConfig(rc)
		if cerr != nil {
			return runtimeErr(cerr)
		}
		sctx, stopSnapshots := context.WithCancel(ctx)
		defer stopSnapshots()
		go snapshotRequests(sctx, cs, sn.Namespace, current.Load, log)
	}
	if !cfg.LeaderElection.Enabled {
		// Nothing aborts sends: SIGTERM drains them.
		err = pipeline(ctx, context.WithoutCancel(ctx))
	} else {
		cs, cerr := kubernetes.NewForConfig(rc)
		if cerr != nil {
			return runtimeErr(cerr)
		}
		host, _ := os.Hostname()
		lo := leadOptions{
			Client: cs, Election: cfg.LeaderElection, Identity: fmt.Sprintf("%s_%d", host, time.Now().UnixNano()),
			StopTimeout: 2 * cfg.ShutdownTimeout.Duration, Log: log,
		}
		if cfg.Sharding != nil {
			err = runShards(ctx, rc, cfg, log, reg, lo, shards)
		} else if cfg.LeaderElection.Standby == config.StandbyWarm {
			err = leadWarm(ctx, rc, cfg, log, reg, lo, leader, &current, &follower, pipeline)
		} else {
			err = lead(ctx, lo, pipeline)
		}
	}
	if err != nil {
		return err
	}
	log.Info("kubefeed stopped")
	return nil
}

// runPipeline builds sinks, checkpoint and exporter and runs them until ctx
// ends and the exporter drained. Sends in flight are cancelled, not drained,
// when sendCtx ends (see leaderPipeline).
//
// sp, when set, is the shard it runs: its lists and watches carry the
// shard's selector, and its checkpoint is the shard's (shardStore).
// publish is given the exporter while it runs, then nil.
func runPipeline(ctx, sendCtx context.Context, rc *rest.Config, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, sp *shard.Span, publish func(*exporter.Exporter)) error {
	opts, err := pipelineOptions(rc, cfg, log, reg)
	if err != nil {
		return runtimeErr(err)
	}
	ss, err := pipelineSinks(ctx, sendCtx, cfg, log)
	if err != nil {
		return runtimeErr(err)
	}
	opts.Sinks, opts.SendContext, opts.Shard = ss, sendCtx, sp
	if cp := cfg.Checkpoint; cp != nil {
		closeCP, err := openCheckpoint(ctx, cp, cfg, log, reg, &opts, sp)
		if err != nil {
			closeSinks(ss)
			return runtimeErr(err)
		}
		defer closeCP()
	}
	ex, err := exporter.New(opts)
	if err != nil {
		closeSinks(ss)
		return runtimeErr(err)
	}
	publish(ex)
	defer publish(nil)
	if err := ex.Run(ctx); err != nil {
		return runtimeErr(err)
	}
	return nil
}

// pipelineOptions are the exporter's options without sinks and stores:
// the clients of rc, the config, logger and registry.
func pipelineOptions(rc *rest.Config, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (exporter.Options, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return exporter.Options{}, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return exporter.Options{}, fmt.Errorf("discovery client: %w", err)
	}
	// Enrichment of Events reads the involved objects' metadata only.
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return exporter.Options{}, fmt.Errorf("metadata client: %w", err)
	}
	return exporter.Options{
		Config: cfg, Client: dyn, RESTConfig: rc, Metadata: md, Resolver: resource.NewDiscoveryResolver(dc), Logger: log, Registerer: reg,
	}, nil
}

// pipelineSinks builds the config's sinks (a sink that cannot be opened
// yet is a sinks.Deferred) and fences them with sendCtx, as the exporter
// gets them.
func pipelineSinks(ctx, sendCtx context.Context, cfg *config.Config, log *zap.Logger) (map[string]sinks.Sink, error) {
	built, err := buildSinks(ctx, cfg, log)
	if err != nil {
		closeSinks(built)
		return nil, err
	}
	return fence(built, sendCtx), nil
}

// closeSinks closes sinks no exporter was given.
func closeSinks(ss map[string]sinks.Sink) {
	for _, s := range ss {
		_ = s.Close(context.Background())
	}
}

// checkpointBackend is a File or a KV.
type checkpointBackend interface {
	Run(context.Context) error
	Close() error
}

// openCheckpoint loads every sink's store and starts the flusher; the
// returned func stops it with a final flush. sp, when set, is the shard
// the stores are of (shardStore); a shard store no run flushed yet starts
// from the records of the layout that ran before (seedShardStores).
func openCheckpoint(ctx context.Context, cp *config.Checkpoint, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, opts *exporter.Options, sp *shard.Span) (func(), error) {
	storeName := func(sink string) string { return sink }
	if sp != nil {
		storeName = func(sink string) string { return shardStore(sink, sp) }
	}
	var kv *checkpoint.KV
	clog := log.Named("checkpoint")
	var backend checkpointBackend
	var load func(sink string) (*checkpoint.Store, error)
	corrupt := false
	if cp.File != nil {
		// A file another kubefeed holds (checkpoint.ErrLocked) is left
		// alone and ends the run (exit 2); only an unreadable one is lost.
		f, err := checkpoint.OpenFile(cp.File.Path, true, clog)
		if errors.Is(err, checkpoint.ErrCorrupt) {
			// Documented fallback: start as on a first run, with gap markers.
			log.Error("checkpoint unreadable; starting as on a first run and sending gap markers", zap.Error(err))
			opts.StartGap = exporter.GapCheckpointLost
			corrupt = true
		} else if err != nil {
			return nil, err
		}
		reg.MustRegister(checkpoint.NewCollector(f, corrupt))
		backend, load = f, f.Store
	} else {
		var err error
		kv, err = checkpoint.OpenKV(ctx, *cp.JetStream, true, clog)
		if err != nil {
			return nil, err
		}
		reg.MustRegister(checkpoint.NewCollector(kv, false))
		backend = kv
		load = func(sink string) (*checkpoint.Store, error) { return kv.Store(ctx, sink) }
	}
	opts.Stores = map[string]state.Store{}
	for _, sc := range cfg.Sinks {
		st, err := load(storeName(sc.Name))
		if err != nil {
			_ = backend.Close()
			return nil, err
		}
		opts.Stores[sc.Name] = st
	}
	if kv != nil {
		// A shard's store, or the unsharded one after sharding was turned
		// off, starts from the layout that ran last.
		if err := seedShardStores(ctx, kv, sp, opts.Stores, clog); err != nil {
			_ = backend.Close()
			return nil, err
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- backend.Run(cctx) }()
	return func() {
		cancel()
		<-done
		// Close writes what is left, within a bound (10s): a backend that
		// is down cannot hold the shutdown.
		if err := backend.Close(); err != nil {
			log.Error("final checkpoint flush", zap.Error(err))
		}
	}, nil
}

// serveHealth serves healthHandler on the metrics address.
func serveHealth(mc config.Metrics, ready func() (bool, string), reg *prometheus.Registry, log *zap.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", mc.Address)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", mc.Address, err)
	}
	srv := &http.Server{Handler: healthHandler(mc, ready, reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", zap.Error(err))
		}
	}()
	return srv, nil
}

// healthHandler serves /metrics, /healthz, /readyz (503 with the first
// part that is not ready: standby, a scope not synced, a sink not open)
// and optionally pprof.
func healthHandler(mc config.Metrics, ready func() (bool, string), reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if mc.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		if why == "" {
			why = "ok" // a leader; a warm standby says so
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	return mux
}
