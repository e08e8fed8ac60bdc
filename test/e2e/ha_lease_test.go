package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// A leader whose pipeline cannot start (its shared checkpoint's NATS server
// refuses connections) exits 2 and releases the Lease; the
// other replica then acquires it at once, fails the same way, and releases
// it too. The Lease lasts a minute: without the release, the second replica
// could not lead before the harness gives up.
func TestFailingLeaderExits2AndReleasesTheLease(t *testing.T) {
	ns := namespace(t, "ha-fail", nil)
	lns := namespace(t, "ha-fail-lease", nil)
	srv := natstest.StartT(t, natstest.Options{})
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[2]s]}
sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED}
checkpoint:
  jetstream: {servers: [nats://127.0.0.1:%[4]d], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[3]s, name: kubefeed, leaseDuration: 60s, renewDeadline: 40s, retryPeriod: 300ms}
`, srv.URL(), ns, lns, freePort(t)))
	a, b := startReplica(t, cfg), startReplica(t, cfg)
	ids := map[*daemon]string{a: identity(t, a), b: identity(t, b)}
	exited := make(chan *daemon, 2)
	for _, d := range []*daemon{a, b} {
		go func() { _ = d.cmd.Wait(); exited <- d }()
	}
	for i := range 2 {
		var d *daemon
		select {
		case d = <-exited:
		case <-time.After(45 * time.Second):
			t.Fatalf("%d of 2 replicas exited; the others still run:\nA:\n%s\nB:\n%s", i, a.logs.String(), b.logs.String())
		}
		if code := d.cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("replica %s exited %d, want 2:\n%s", ids[d], code, d.logs.String())
		}
		for _, want := range []string{"became the leader", "checkpoint", "releasing the lease"} {
			if !strings.Contains(d.logs.String(), want) {
				t.Errorf("replica %s: no %q in its log:\n%s", ids[d], want, d.logs.String())
			}
		}
		if h := leaseHolder(t, lns); h == ids[d] {
			t.Errorf("replica %s exited still holding the Lease", h)
		}
	}
	if h := leaseHolder(t, lns); h != "" {
		t.Errorf("Lease held by %q after both replicas exited, want released (empty)", h)
	}
}

// SIGTERM to a leader that is behind (a burst through a slow webhook): the
// leader drains its queue, holding the Lease throughout, so that every
// event arrives; it releases the Lease only after the drain and exits 0.
func TestLeaderDrainsBeforeReleasingTheLease(t *testing.T) {
	ns := namespace(t, "ha-drain", nil)
	lns := namespace(t, "ha-drain-lease", nil)
	srv := natstest.StartT(t, natstest.Options{})
	cs, dyn := clients(t)
	hook := &slowHook{delay: 100 * time.Millisecond, cs: cs, lns: lns, names: map[string]bool{}}
	hs := httptest.NewServer(hook)
	maddr := freeAddr(t)
	defer hs.Close()
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
workers: 2
shutdownTimeout: 2m
metrics: {address: "%[5]s"}
watch:
  - {resource: configmaps, namespaces: [%[2]s]}
sinks:
  - name: hook
    webhook: {url: %[4]s/events, timeout: 30s}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[3]s, name: kubefeed, leaseDuration: 2s, renewDeadline: 1500ms, retryPeriod: 300ms}
`, srv.URL(), ns, lns, hs.URL, maddr))
	d := startReplica(t, cfg)
	defer func() {
		if t.Failed() {
			t.Logf("kubefeed log:\n%s", d.logs.String())
		}
	}()
	id := identity(t, d)
	waitLog(t, d, "caches synced")

	const objects = 120
	for i := range objects {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(context.Background(), cm(fmt.Sprintf("c%03d", i), nil, map[string]any{"n": fmt.Sprint(i)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every add reached the queue (changes the informers did not see before
	// SIGTERM would be the next leader's); the webhook takes 100ms each with
	// two workers, so most are still pending.
	for deadline := time.Now().Add(30 * time.Second); observedConfigMaps(t, maddr) < objects; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed observed %v configmap changes, want %d", observedConfigMaps(t, maddr), objects)
		}
	}
	hook.term.Store(true)
	if err := d.term(t); err != nil {
		t.Fatalf("kubefeed after SIGTERM: %v, want exit 0\n%s", err, d.logs.String())
	}

	hook.mu.Lock()
	defer hook.mu.Unlock()
	var missing []string
	for i := range objects {
		if n := fmt.Sprintf("c%03d", i); !hook.names[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d configmaps never arrived (%d after SIGTERM): %v", len(missing), objects, hook.afterTerm, missing)
	} else if hook.afterTerm == 0 {
		t.Errorf("every event arrived before SIGTERM: no drain to check; slow the webhook down")
	}
	for i, h := range hook.holders {
		if !strings.HasSuffix(h, " "+id) {
			t.Errorf("delivery %d after SIGTERM: Lease holder %q, want the leader %q", i, h, id)
		}
	}
	t.Logf("%d events delivered after SIGTERM", hook.afterTerm)
	if h := leaseHolder(t, lns); h != "" {
		t.Errorf("Lease held by %q after the leader exited, want released (empty)", h)
	}
}

// slowHook is a webhook that takes delay per event and, after term, notes
// when an event arrived and who held the Lease then.
type slowHook struct {
	delay time.Duration
	cs    kubernetes.Interface
	lns   string
	term  atomic.Bool

	mu        sync.Mutex
	names     map[string]bool
	afterTerm int
	holders   []string
}

func (h *slowHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	holder, after := "", h.term.Load()
	if after {
		holder = time.Now().Format(time.StampMicro) + " " + leaseHolderOrErr(h.cs, h.lns)
	}
	time.Sleep(h.delay)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names[ev.Name] = true
	if after {
		h.afterTerm++
		h.holders = append(h.holders, holder)
	}
	w.WriteHeader(http.StatusNoContent)
}

var observedRE = regexp.MustCompile(`(?m)^kubefeed_changes_observed_total\{[^}]*resource="configmaps"[^}]*\} ([0-9.e+]+)$`)

// observedConfigMaps sums kubefeed_changes_observed_total for configmaps.
func observedConfigMaps(t *testing.T, addr string) float64 {
	t.Helper()
	var sum float64
	for _, m := range observedRE.FindAllStringSubmatch(scrape(t, addr), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

var identityRE = regexp.MustCompile(`"identity": "([^"]+)"`)

// identity is the Lease identity a replica logged.
func identity(t *testing.T, d *daemon) string {
	t.Helper()
	m := identityRE.FindStringSubmatch(d.logs.String())
	if m == nil {
		t.Fatalf("no identity in the log:\n%s", d.logs.String())
	}
	return m[1]
}

func leaseHolder(t *testing.T, ns string) string {
	t.Helper()
	cs, _ := clients(t)
	l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), "kubefeed", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Lease %s/kubefeed: %v", ns, err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leaseHolderOrErr is leaseHolder for a handler goroutine.
func leaseHolderOrErr(cs kubernetes.Interface, ns string) string {
	l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), "kubefeed", metav1.GetOptions{})
	if err != nil {
		return "error: " + err.Error()
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
