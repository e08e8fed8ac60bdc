package app

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/checkpoint"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// warmOpenTimeout bounds a standby's first attempt to open the checkpoint.
const warmOpenTimeout = 5 * time.Second

// leadWarm is lead for a warm standby (leaderElection.standby: warm):
// while it waits for the Lease, the exporter's informers run (a standby
// Exporter routes nothing) and a Follower keeps its stores current with
// the shared KV checkpoint. On taking the Lease the pipeline builds the
// sinks, catches the stores up with the bucket, starts flushing it and
// hands the sinks to the exporter, which compares its warm caches with the
// checkpoint: no list.
//
// A checkpoint that cannot be reached at start (within warmOpenTimeout) leaves the replica a cold
// standby (cold runs as lead does): it is not a reason to stop waiting.
// A standby whose exporter fails (an informer that cannot start) stops
// waiting for the Lease and returns the error.
func leadWarm(ctx context.Context, rc *rest.Config, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry, lo leadOptions,
	leader prometheus.Gauge, current *atomic.Pointer[exporter.Exporter], following *atomic.Pointer[checkpoint.Follower], cold leaderPipeline) error {
	opts, err := pipelineOptions(rc, cfg, log, reg)
	if err != nil {
		return runtimeErr(err)
	}
	clog := log.Named("checkpoint")
	// The standby does not wait long for the bucket: one it cannot reach
	// leaves it cold, in the election at once (a leader then gets the full
	// 30s that OpenKV gives a bucket).
	octx, cancel := context.WithTimeout(ctx, warmOpenTimeout)
	kv, err := checkpoint.OpenKV(octx, *cfg.Checkpoint.JetStream, true, clog)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		log.Error("checkpoint not reachable; standing by cold (the leader will list everything)", zap.Error(err))
		return lead(ctx, lo, cold)
	}
	reg.MustRegister(checkpoint.NewCollector(kv, false))
	names := make([]string, 0, len(cfg.Sinks))
	for _, sc := range cfg.Sinks {
		names = append(names, sc.Name)
	}
	f := kv.Follow(names)
	opts.Stores = map[string]state.Store{}
	for _, n := range names {
		opts.Stores[n] = f.Store(n)
	}
	opts.Standby = true
	ex, err := exporter.New(opts)
	if err != nil {
		_ = kv.Close() // a standby registered no store: nothing is written
		return runtimeErr(err)
	}

	sctx, stopStandby := context.WithCancel(ctx)
	defer stopStandby()
	go f.Run(sctx)
	following.Store(f)
	current.Store(ex)
	defer current.Store(nil)
	var runErr error
	ran := make(chan struct{})
	go func() { runErr = ex.Run(sctx); close(ran) }()
	// A standby whose exporter stopped stops waiting for the Lease.
	lctx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	go func() {
		select {
		case <-ran:
			if ex.Standby() {
				stopWaiting()
			}
		case <-lctx.Done():
		}
	}()
	led := false
	pipeline := func(pctx, sendCtx context.Context) error {
		led = true
		leader.Set(1)
		defer leader.Set(0)
		ss, err := pipelineSinks(pctx, sendCtx, cfg, log)
		if err != nil {
			return runtimeErr(err)
		}
		if err := f.Lead(pctx); err != nil {
			closeSinks(ss)
			return runtimeErr(err)
		}
		// Sharding turned off: the unsharded stores start from the shards'
		// records when those were flushed last.
		if err := seedShardStores(pctx, kv, nil, maps.Clone(opts.Stores), log.Named("checkpoint")); err != nil {
			closeSinks(ss)
			return runtimeErr(err)
		}
		fctx, stopFlushing := context.WithCancel(context.Background())
		flushed := make(chan error, 1)
		go func() { flushed <- kv.Run(fctx) }()
		defer func() {
			stopFlushing()
			<-flushed
			// Close writes what is left, within a bound (10s).
			if err := kv.Close(); err != nil {
				log.Error("final checkpoint flush", zap.Error(err))
			}
		}()
		if err := ex.Lead(pctx, sendCtx, ss); err != nil {
			closeSinks(ss)
			if errors.Is(err, exporter.ErrStopped) {
				// Stopped as it was elected: a standby's stop.
				<-ran
				if runErr != nil {
					return runtimeErr(runErr)
				}
				return nil
			}
			return runtimeErr(err)
		}
		<-ran
		if runErr != nil {
			return runtimeErr(runErr)
		}
		return nil
	}
	err = lead(lctx, lo, pipeline)
	stopStandby()
	<-ran
	if !led {
		_ = kv.Close() // a standby registered no store: nothing is written
		if runErr != nil && ctx.Err() == nil {
			return runtimeErr(runErr)
		}
		if err == nil && ctx.Err() == nil {
			return runtimeErr(errors.New("the standby stopped"))
		}
	}
	return err
}
