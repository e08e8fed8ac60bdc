package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// The test Lease: renewDeadline is over two thirds of leaseDuration, so that
// a leader that only noticed the loss after its release attempt (another
// renewDeadline) would still be sending after the Lease expired.
var testElection = config.LeaderElection{
	Enabled: true, Namespace: "kubefeed", Name: "kubefeed",
	LeaseDuration: config.Duration{Duration: 3 * time.Second},
	RenewDeadline: config.Duration{Duration: 2 * time.Second},
	RetryPeriod:   config.Duration{Duration: 400 * time.Millisecond},
}

var leaseGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

// lease reads the Lease from the fake's tracker, past any reactor.
func lease(cs *fake.Clientset) (*coordinationv1.Lease, error) {
	o, err := cs.Tracker().Get(leaseGVR, testElection.Namespace, testElection.Name)
	if err != nil {
		return nil, err
	}
	return o.(*coordinationv1.Lease), nil
}

func holder(cs *fake.Clientset) (string, error) {
	l, err := lease(cs)
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// startLead runs lead as replica "a" until ctx ends; the channel yields
// its result.
func startLead(t *testing.T, ctx context.Context, cs *fake.Clientset, pipeline leaderPipeline) <-chan error {
	t.Helper()
	return startLeadStop(t, ctx, cs, time.Minute, pipeline)
}

func startLeadStop(t *testing.T, ctx context.Context, cs *fake.Clientset, stop time.Duration, pipeline leaderPipeline) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		done <- lead(ctx, leadOptions{
			Client: cs, Election: testElection, Identity: "a", StopTimeout: stop,
			Log: zaptest.NewLogger(t),
		}, pipeline)
	}()
	return done
}

// await guards against a hang; it asserts nothing about speed.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still waiting after 30s", what)
		panic("unreachable")
	}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return -1
}

// A leader whose pipeline returns, with an error or without, stops leading,
// releases the Lease and exits 2.
func TestLeadPipelineEndStopsLeadingAndReleases(t *testing.T) {
	boom := errors.New("stream KUBEFEED not found")
	for _, tc := range []struct {
		name    string
		pipeErr error
		want    string
	}{
		{"error", runtimeErr(boom), boom.Error()},
		{"plain error", boom, boom.Error()},
		{"nil", nil, "pipeline stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var calls atomic.Int32
			done := startLead(t, context.Background(), cs, func(context.Context, context.Context) error {
				calls.Add(1)
				return tc.pipeErr
			})
			err := await(t, done, "lead after its pipeline returned")
			if err == nil || exitCode(err) != exitRuntime {
				t.Fatalf("lead returned %v (exit %d), want a runtime error (exit 2)", err, exitCode(err))
			}
			if tc.pipeErr != nil && !errors.Is(err, boom) {
				t.Errorf("lead returned %v, want the pipeline's error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if h, err := holder(cs); err != nil || h != "" {
				t.Errorf("Lease holder %q (%v) after the leader stopped, want released (empty)", h, err)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("pipeline ran %d times, want once", n)
			}
		})
	}
}

// On SIGTERM the leader keeps the Lease, and renews it, until the pipeline
// has drained; sends are not aborted; then the Lease is released.
func TestLeadDrainsThePipelineBeforeReleasing(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var (
		mu       sync.Mutex
		during   []string
		aborted  bool
		renewals = map[time.Time]bool{}
	)
	var drained atomic.Bool
	done := startLead(t, ctx, cs, func(pctx, sendCtx context.Context) error {
		close(started)
		<-pctx.Done()
		// Drain for longer than the Lease lasts without renewal.
		end := time.Now().Add(testElection.LeaseDuration.Duration + testElection.RetryPeriod.Duration)
		for time.Now().Before(end) {
			l, err := lease(cs)
			mu.Lock()
			if err != nil {
				during = append(during, "error: "+err.Error())
			} else {
				during = append(during, *l.Spec.HolderIdentity)
				renewals[l.Spec.RenewTime.Time] = true
			}
			select {
			case <-sendCtx.Done():
				aborted = true
			default:
			}
			mu.Unlock()
			time.Sleep(testElection.RetryPeriod.Duration / 2)
		}
		drained.Store(true)
		return nil
	})
	await(t, started, "leading")
	cancel()
	if err := await(t, done, "lead after SIGTERM"); err != nil {
		t.Fatalf("lead after SIGTERM: %v, want nil", err)
	}
	if !drained.Load() {
		t.Fatal("lead returned before the pipeline drained")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, h := range during {
		if h != "a" {
			t.Errorf("check %d during the drain: Lease holder %q, want a", i, h)
		}
	}
	if aborted {
		t.Error("sends aborted during a SIGTERM drain while the Lease was held")
	}
	if len(renewals) < 2 {
		t.Errorf("the Lease was not renewed during the drain (renew times seen: %d)", len(renewals))
	}
	if h, err := holder(cs); err != nil || h != "" {
		t.Errorf("Lease holder %q (%v) after the drain, want released (empty)", h, err)
	}
}

// When renewals fail (the API server unreachable: every call times out),
// the pipeline's ctx ends and in-flight sends are aborted while the Lease
// is still ours, that is before the last renewal plus leaseDuration, when
// another replica may take it.
func TestLeadLostLeaseAbortsSendsBeforeTheLeaseExpires(t *testing.T) {
	cs := fake.NewClientset()
	var down atomic.Bool
	timeout := func(k8stesting.Action) (bool, runtime.Object, error) {
		if !down.Load() {
			return false, nil, nil
		}
		time.Sleep(testElection.RenewDeadline.Duration)
		return true, nil, errors.New("context deadline exceeded (apiserver unreachable)")
	}
	cs.PrependReactor("get", "leases", timeout)
	cs.PrependReactor("update", "leases", timeout)

	started := make(chan struct{})
	type abortSeen struct {
		at       time.Time
		ctxEnded bool
	}
	seen := make(chan abortSeen, 1)
	done := startLead(t, context.Background(), cs, func(pctx, sendCtx context.Context) error {
		close(started)
		<-sendCtx.Done()
		s := abortSeen{at: time.Now()}
		select {
		case <-pctx.Done():
			s.ctxEnded = true
		default:
		}
		seen <- s
		return nil
	})
	await(t, started, "leading")
	// Let one renewal through, so that the Lease has a known renew time.
	first, err := lease(cs)
	if err != nil {
		t.Fatal(err)
	}
	for {
		l, err := lease(cs)
		if err != nil {
			t.Fatal(err)
		}
		if !l.Spec.RenewTime.Equal(first.Spec.RenewTime) {
			break
		}
		time.Sleep(testElection.RetryPeriod.Duration / 4)
	}
	down.Store(true)
	t.Logf("renewed at %s, then the API server went down", time.Now().Format(time.StampMilli))
	s := await(t, seen, "sends aborted after the renewals failed")
	err = await(t, done, "lead after losing the Lease")
	if exitCode(err) != exitRuntime || !strings.Contains(err.Error(), "lost the leader lease") {
		t.Errorf("lead returned %v (exit %d), want exit 2 naming the lost lease", err, exitCode(err))
	}
	if !s.ctxEnded {
		t.Error("sends aborted but the pipeline's ctx still live")
	}
	l, err := lease(cs)
	if err != nil {
		t.Fatal(err)
	}
	expires := l.Spec.RenewTime.Add(testElection.LeaseDuration.Duration)
	if !s.at.Before(expires) {
		t.Errorf("sends aborted at %s, after the Lease expired at %s (last renewal %s)",
			s.at.Format(time.StampMilli), expires.Format(time.StampMilli), l.Spec.RenewTime.Format(time.StampMilli))
	}
}

// A replica stopped while standing by returns nil without running the
// pipeline, and leaves the leader's Lease alone.
func TestLeadStandbyStopsCleanly(t *testing.T) {
	other := "b"
	now := metav1.NewMicroTime(time.Now())
	secs := int32(3600)
	cs := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: testElection.Namespace, Name: testElection.Name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &other, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now,
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	done := startLead(t, ctx, cs, func(context.Context, context.Context) error { ran.Store(true); return nil })
	// Wait until the elector has seen the other leader.
	for {
		acts := cs.Actions()
		if len(acts) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := await(t, done, "standby after SIGTERM"); err != nil {
		t.Errorf("standby stopped with %v, want nil", err)
	}
	if ran.Load() {
		t.Error("a standby ran the pipeline")
	}
	if h, err := holder(cs); err != nil || h != other {
		t.Errorf("Lease holder %q (%v), want %q untouched", h, err, other)
	}
}

// A pipeline that ignores its stop signal is fenced off after StopTimeout:
// its sends are aborted, the Lease released, and lead exits 2.
func TestLeadFencesAPipelineThatDoesNotStop(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	hang := make(chan struct{})
	defer close(hang)
	var sends atomic.Pointer[context.Context]
	done := startLeadStop(t, ctx, cs, 200*time.Millisecond, func(_, sendCtx context.Context) error {
		sends.Store(&sendCtx)
		close(started)
		<-hang
		return nil
	})
	await(t, started, "leading")
	cancel()
	err := await(t, done, "lead with a stuck pipeline")
	if exitCode(err) != exitRuntime || !strings.Contains(err.Error(), "still running") {
		t.Errorf("lead returned %v (exit %d), want exit 2 naming the stuck pipeline", err, exitCode(err))
	}
	// Read when lead returned (the Lease released): the stuck pipeline
	// itself may not have run since.
	if (*sends.Load()).Err() == nil {
		t.Error("the stuck pipeline's sends were not aborted before the Lease was released")
	}
	if h, err := holder(cs); err != nil || h != "" {
		t.Errorf("Lease holder %q (%v), want released (empty)", h, err)
	}
}
