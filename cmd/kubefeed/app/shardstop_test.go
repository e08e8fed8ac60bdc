package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/shard"
)

// oneShardSet is a replica of a feed of 2 shards whose pipelines run
// pipeline.
func oneShardSet(t *testing.T, cs kubernetes.Interface, id string, pipeline leaderPipeline) *shardSet {
	le := config.LeaderElection{Enabled: true, Namespace: "kf", Name: "kubefeed"}
	le.LeaseDuration.Duration, le.RenewDeadline.Duration, le.RetryPeriod.Duration = 900*time.Millisecond, 600*time.Millisecond, 100*time.Millisecond
	log := zaptest.NewLogger(t).Named(id)
	return &shardSet{n: 2, log: log, held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "h"}),
		pipeline: func(*shard.Span) leaderPipeline { return pipeline },
		lo:       leadOptions{Client: cs, Election: le, Identity: id, StopTimeout: 5 * time.Second, Log: log},
		members:  &members{client: cs, namespace: "kf", name: "kubefeed-members", identity: id, live: le.LeaseDuration.Duration, now: time.Now}}
}

// A replica that stops (SIGTERM) removes its entry from the registry even
// when its first try conflicts with another replica's beat (three replicas
// beating every retryPeriod conflict often): otherwise the others count it
// live for another leaseDuration and leave the shards it released without
// a runner meanwhile (the e2e test saw 4.8s instead of 0.6s).
func TestAStoppingReplicaLeavesTheRegistryThoughItsUpdateConflicts(t *testing.T) {
	cs := fake.NewSimpleClientset()
	var conflicts atomic.Int32
	cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if _, in := l.Annotations[memberKey("a_1")]; l.Name == "kubefeed-members" && !in && conflicts.Add(1) == 1 {
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), l.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	var running atomic.Int32
	ss := oneShardSet(t, cs, "a_1", func(ctx, _ context.Context) error { running.Add(1); <-ctx.Done(); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ss.run(ctx) }()
	waitUntil(t, 10*time.Second, "a running both shards", func() bool { return running.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if conflicts.Load() == 0 {
		t.Fatal("the leave was never tried")
	}
	l, err := cs.CoordinationV1().Leases("kf").Get(context.Background(), "kubefeed-members", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, in := l.Annotations[memberKey("a_1")]; in {
		t.Errorf("a's entry %q is still in the registry after it stopped (%d updates tried)", v, conflicts.Load())
	}
}

// A replica stopped (SIGTERM) while a shard's pipeline starts, whose start
// then fails only because it was stopped (opening the checkpoint bucket:
// context canceled), stops cleanly: run returns nil, not a runtime error
// (exit 2), as it does when the pipeline had started.
func TestAReplicaStoppedWhileAShardStartsStopsCleanly(t *testing.T) {
	cs := fake.NewSimpleClientset()
	var started atomic.Int32
	ss := oneShardSet(t, cs, "a_1", func(ctx, _ context.Context) error {
		started.Add(1)
		<-ctx.Done()
		return runtimeErr(fmt.Errorf("checkpoint bucket kubefeed-checkpoint: %w", ctx.Err()))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ss.run(ctx) }()
	waitUntil(t, 10*time.Second, "both shards starting", func() bool { return started.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after a stop during the shards' start: %v, want nil", err)
	}
}
