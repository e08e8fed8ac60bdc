package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// leaderPipeline runs while this replica leads. ctx ends when it must stop
// taking work; abort closes when in-flight sends must be cancelled rather
// than drained.
type leaderPipeline func(ctx context.Context, abort <-chan struct{}) error

// leadOptions configure lead.
type leadOptions struct {
	Client   kubernetes.Interface
	Election config.LeaderElection
	// Identity is written to the Lease's holderIdentity.
	Identity string
	// StopTimeout bounds how long a leader waits for the pipeline after ctx
	// ended.
	StopTimeout time.Duration
	Log         *zap.Logger
}

// lead runs pipeline while this replica holds the Lease. Losing the Lease
// stops the pipeline and exits with a runtime error, so that the replica
// restarts as a standby; a cancelled ctx releases the Lease.
func lead(ctx context.Context, o leadOptions, pipeline leaderPipeline) error {
	le, log, id := o.Election, o.Log, o.Identity
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	var runErr error
	lost := false
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: "kubefeed", ReleaseOnCancel: true,
		LeaseDuration: le.LeaseDuration.Duration, RenewDeadline: le.RenewDeadline.Duration, RetryPeriod: le.RetryPeriod.Duration,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				log.Info("became the leader; running the pipeline from the shared checkpoint", zap.String("identity", id))
				runErr = pipeline(lctx, nil)
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost = true
					log.Error("lost the lease; stopping", zap.String("identity", id))
				}
			},
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
	log.Info("waiting for the lease", zap.String("lease", le.Namespace+"/"+le.Name), zap.String("identity", id))
	elector.Run(ctx)
	if runErr != nil {
		return runErr
	}
	if lost {
		return runtimeErr(errors.New("lost the leader lease"))
	}
	return nil
}
