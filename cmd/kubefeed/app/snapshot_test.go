package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

func snapshotRequestCM(name string, created time.Time, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kubefeed", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(created), Labels: map[string]string{snapshotLabel: phasePending}},
		Data: data,
	}
}

// A request whose data holds a key kubefeed does not know (a typo, or
// --scope's syntax written by hand) fails naming it, rather than running
// a snapshot of everything on every sink.
func TestSnapshotRequestWithAnUnknownKeyFails(t *testing.T) {
	for _, data := range []map[string]string{
		{"scope": "configmaps/shop"},
		{keyResource: "configmaps", "namespaces": "shop"},
	} {
		r := readSnapshotRequest(snapshotRequestCM("x", time.Now(), data))
		if r.bad == "" {
			t.Fatalf("%v: accepted as %+v", data, r.req)
		}
		for k := range data {
			if k != keyResource && !strings.Contains(r.bad, k) {
				t.Errorf("%v: %q does not name %q", data, r.bad, k)
			}
		}
	}
	// What kubefeed writes back is known.
	r := readSnapshotRequest(snapshotRequestCM("x", time.Now(), map[string]string{keyResource: "configmaps", keyNamespace: "", keySink: "",
		keyID: "u", keyStartedAt: "2026-01-02T03:04:05Z", keyCount: "3", keyResult: "r", keyMessage: "m", keyCompletedAt: "2026-01-02T03:04:06Z"}))
	if r.bad != "" {
		t.Fatal(r.bad)
	}
}

// nopSink acknowledges everything.
type nopSink struct{}

func (nopSink) Send(context.Context, []*event.Event) error { return nil }
func (nopSink) Close(context.Context) error                { return nil }

var _ sinks.Sink = nopSink{}

// A request whose outcome cannot be written (an immutable ConfigMap)
// does not hold back the requests behind it.
func TestSnapshotRequestsGoOnPastOneWhoseOutcomeCannotBeWritten(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	stuck := snapshotRequestCM("a-stuck", t0, map[string]string{keyNamespace: "Not_A_Namespace"})
	stuck.Immutable = new(bool)
	*stuck.Immutable = true
	next := snapshotRequestCM("b-next", t0.Add(time.Minute), map[string]string{keyNamespace: "Also_Bad"})
	cs := fake.NewClientset(stuck, next)
	cs.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.UpdateAction).GetObject().(*corev1.ConfigMap).Name == stuck.Name {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, stuck.Name,
				field.ErrorList{field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set")})
		}
		return false, nil, nil
	})
	ctx := runSnapshotRequests(t, cs)
	for {
		got, err := cs.CoreV1().ConfigMaps("kubefeed").Get(ctx, next.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Labels[snapshotLabel] == phaseFailed {
			if !strings.Contains(got.Data[keyMessage], "Also_Bad") {
				t.Fatalf("message %q", got.Data[keyMessage])
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the request behind the stuck one is still %q", got.Labels[snapshotLabel])
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// expiringWatch ends at once with 410 Gone, as an API server does for a
// resourceVersion it compacted away.
func expiringWatch(calls *int) k8stesting.WatchReactionFunc {
	return func(k8stesting.Action) (bool, watch.Interface, error) {
		*calls++
		w := watch.NewRaceFreeFake()
		w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
		w.Stop()
		return true, w, nil
	}
}

// A wait whose watch expired (410) reads the request again, rather than
// watching from the expired version until its timeout.
func TestWaitSnapshotRequestAfterItsWatchExpired(t *testing.T) {
	cm := snapshotRequestCM("r", time.Now(), nil)
	cm.ResourceVersion = "1"
	cs := fake.NewClientset()
	done := cm.DeepCopy()
	done.Labels[snapshotLabel] = phaseCompleted
	done.Data = map[string]string{keyCount: "7"}
	if _, err := cs.CoreV1().ConfigMaps("kubefeed").Create(context.Background(), done, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	cs.PrependWatchReactor("configmaps", expiringWatch(&calls))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := waitSnapshotRequest(ctx, cs, cm)
	if err != nil {
		t.Fatalf("%v after %d watches", err, calls)
	}
	if got.Data[keyCount] != "7" {
		t.Fatalf("got %+v", got)
	}
}

// A request deleted while it runs is withdrawn: its run ends, and the
// requests behind it are not held back until it would have completed.
func TestSnapshotRequestDeletedWhileRunningIsWithdrawn(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	long := snapshotRequestCM("a-long", t0, map[string]string{keyResource: "configmaps"})
	next := snapshotRequestCM("b-next", t0.Add(time.Minute), map[string]string{keyNamespace: "Also_Bad"})
	cs := fake.NewClientset(long, next)
	// Its exporter never runs: its caches never sync, so the snapshot of
	// a-long waits.
	ctx := runSnapshotRequests(t, cs)
	phase := func(name string) string {
		got, err := cs.CoreV1().ConfigMaps("kubefeed").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Labels[snapshotLabel]
	}
	for phase(long.Name) != phaseRunning {
		select {
		case <-ctx.Done():
			t.Fatal("a-long never ran")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cs.CoreV1().ConfigMaps("kubefeed").Delete(ctx, long.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for phase(next.Name) != phaseFailed {
		select {
		case <-ctx.Done():
			t.Fatalf("the request behind the withdrawn one is still %q", phase(next.Name))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runSnapshotRequests runs the request loop of namespace kubefeed on cs
// until the test ends (at most 30s, the context returned), for an
// exporter of configmaps into a sink that acknowledges everything, which
// never runs (its caches never sync).
func runSnapshotRequests(t *testing.T, cs *fake.Clientset) context.Context {
	t.Helper()
	cfg := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind, Cluster: "test",
		Watch: []config.Watch{{Resource: "configmaps"}}, Sinks: []config.Sink{{Name: "s", Stdout: &config.StdoutSink{}}}}
	cfg.SetDefaults()
	ex, err := exporter.New(exporter.Options{Config: cfg, Client: listOnly{}, Resolver: configMapsOnly{}, Sinks: map[string]sinks.Sink{"s": nopSink{}}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		snapshotRequests(ctx, cs, "kubefeed", func() *exporter.Exporter { return ex }, zaptest.NewLogger(t))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}
