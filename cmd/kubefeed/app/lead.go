package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// leaderPipeline runs while this replica leads. ctx ends when it must stop
// taking work and drain (SIGTERM, or the Lease lost); sendCtx ends when
// in-flight sends must be cancelled rather than drained (the Lease lost, or
// the drain overran its bound); it stays live during a SIGTERM drain.
type leaderPipeline func(ctx, sendCtx context.Context) error

// leadOptions configure lead.
type leadOptions struct {
	Client   kubernetes.Interface
	Election config.LeaderElection
	// Identity is written to the Lease's holderIdentity.
	Identity string
	// StopTimeout bounds how long a leader waits for the pipeline to drain
	// after ctx ended, while it still holds the Lease.
	StopTimeout time.Duration
	Log         *zap.Logger
}

// lead runs pipeline while this replica holds the Lease, and returns once
// the pipeline has returned and the Lease is released:
//
//   - ctx ends (SIGTERM): the pipeline drains while the Lease is still held
//     and renewed; then the Lease is released and lead returns the
//     pipeline's result (nil on a clean drain).
//   - the pipeline returns while ctx is live (it could not start, or failed):
//     the replica stops leading, releases the Lease and returns the
//     pipeline's error as a runtime error (exit 2), so that Kubernetes
//     restarts it and a standby takes over.
//   - a renewal is overdue (renewDeadline since the last successful write
//     of the Lease) or the elector gives up: sends are aborted at once, the
//     pipeline stops, and lead returns a runtime error.
//
// A standby whose ctx ends returns nil.
func lead(ctx context.Context, o leadOptions, pipeline leaderPipeline) error {
	le, log, id := o.Election, o.Log, o.Identity
	lock := &renewLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}, now: time.Now}
	// The elector runs under its own context, cancelled only once the
	// pipeline has returned (or ctx ended while standing by): client-go's
	// Run returns, and with ReleaseOnCancel releases the Lease, as soon as
	// its context ends, without waiting for OnStartedLeading.
	ectx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElector()
	var (
		mu      sync.Mutex
		started bool // the pipeline runs or ran
		over    bool // Run returned: too late to start it
	)
	result := make(chan error, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: "kubefeed", ReleaseOnCancel: true,
		LeaseDuration: le.LeaseDuration.Duration, RenewDeadline: le.RenewDeadline.Duration, RetryPeriod: le.RetryPeriod.Duration,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if over || ctx.Err() != nil {
					mu.Unlock()
					stopElector()
					return
				}
				started = true
				mu.Unlock()
				log.Info("became the leader; running the pipeline from the shared checkpoint", zap.String("identity", id))
				result <- runLeading(ctx, lctx, lock, o, pipeline)
				log.Info("pipeline stopped; releasing the lease", zap.String("identity", id))
				stopElector()
			},
			// lead reads the outcome from result once Run returned.
			OnStoppedLeading: func() {},
			OnNewLeader: func(who string) {
				if who != id {
					log.Info("standing by", zap.String("leader", who))
				}
			},
		},
	})
	if err != nil {
		return usageErr(fmt.Errorf("leader election: %w", err))
	}
	// A standby stops when ctx ends; a leader once its pipeline returned.
	go func() {
		select {
		case <-ctx.Done():
			mu.Lock()
			if !started {
				stopElector()
			}
			mu.Unlock()
		case <-ectx.Done():
		}
	}()
	log.Info("waiting for the lease", zap.String("lease", le.Namespace+"/"+le.Name), zap.String("identity", id))
	elector.Run(ectx)
	mu.Lock()
	over = true
	ran := started
	mu.Unlock()
	if !ran {
		if ctx.Err() == nil {
			return runtimeErr(errors.New("lost the leader lease before the pipeline started"))
		}
		return nil
	}
	// Run returned: after the pipeline (we stopped it), or because the
	// elector gave up, which ended lctx and so aborts the pipeline.
	err = <-result
	if err != nil {
		return err
	}
	log.Info("stopped leading", zap.String("identity", id))
	return nil
}

// runLeading runs the pipeline under ctx and the Lease, and returns its
// result once it returned, or once it overran StopTimeout after ctx ended.
func runLeading(ctx, lctx context.Context, lock *renewLock, o leadOptions, pipeline leaderPipeline) error {
	pctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	// Sends outlive ctx: a SIGTERM drain delivers while the Lease is held.
	sendCtx, abortSends := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abortSends(nil)
	var (
		once sync.Once
		lost error
	)
	abort := func(why error) {
		once.Do(func() {
			lost = why
			o.Log.Error("aborting sends and stopping the pipeline", zap.String("identity", o.Identity), zap.Error(why))
			stopWork()
			abortSends(why)
		})
	}
	finished := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchLease(lctx, lock, o.Election.RenewDeadline.Duration, finished, func(why error) { abort(fmt.Errorf("lost the leader lease: %w", why)) })
	}()
	done := make(chan error, 1)
	go func() { done <- pipeline(pctx, sendCtx) }()

	var err error
	stopping := pctx.Done()
	var overran <-chan time.Time
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-stopping:
			stopping = nil
			t := time.NewTimer(o.StopTimeout)
			defer t.Stop()
			overran = t.C
		case <-overran:
			// The pipeline ignores its own shutdown bound: fence it off
			// so that releasing the Lease cannot let two leaders send.
			abort(fmt.Errorf("pipeline still running %s after it was told to stop", o.StopTimeout))
			close(finished)
			<-watched
			return runtimeErr(lost)
		}
	}
	close(finished)
	<-watched
	switch {
	case lost != nil:
		if err != nil {
			o.Log.Error("pipeline", zap.Error(err))
		}
		return runtimeErr(lost)
	case ctx.Err() != nil:
		return err
	case err != nil:
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return runtimeErr(err)
	default:
		return runtimeErr(errors.New("pipeline stopped while leading"))
	}
}

// watchLease calls lost once the Lease was not renewed for renewDeadline,
// or lctx ended, until finished closes.
func watchLease(lctx context.Context, lock *renewLock, renewDeadline time.Duration, finished <-chan struct{}, lost func(error)) {
	for {
		wait := time.Until(lock.lastRenewal().Add(renewDeadline))
		if wait <= 0 {
			lost(fmt.Errorf("not renewed within renewDeadline (%s)", renewDeadline))
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-finished:
			t.Stop()
			return
		case <-lctx.Done():
			t.Stop()
			select {
			case <-finished:
			default:
				lost(errors.New("renewal failed"))
			}
			return
		}
	}
}
