package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// Issue 23: a warm standby (leaderElection.standby: warm) runs its
// informers and follows the shared checkpoint while it waits for the Lease,
// so that taking over costs the API server nothing: no LIST and no new
// watch-list, even with 20,000 objects in scope.
func TestWarmStandbyFailoverListsNothing(t *testing.T) {
	f := standbyFailover(t, "warm")
	if f.lists != 0 || f.watchLists != 0 {
		t.Errorf("the warm standby's failover made %v LIST and %v watch-list requests for configmaps, want none", f.lists, f.watchLists)
	}
}

// The same failover with a cold standby (today's behaviour) lists: the
// measure of the warm test is not blind.
func TestColdStandbyFailoverLists(t *testing.T) {
	f := standbyFailover(t, "cold")
	if f.lists == 0 && f.watchLists == 0 {
		t.Errorf("the cold standby's failover made no LIST and no watch-list request for configmaps; the measure is blind")
	}
}

// standbyObjects is how many ConfigMaps the failover tests start with.
const standbyObjects = 20000

// failover is what standbyFailover measured on the API server between just
// before the leader's SIGKILL and the new leader's delivery of a probe
// change made after it.
type failover struct{ lists, watchLists float64 }

// standbyFailover runs two replicas with the given standby mode over
// standbyObjects ConfigMaps (JetStream sink, JetStream KV checkpoint),
// SIGKILLs the leader in the middle of a few hundred changes, makes more
// while there is no leader, and checks that the standby takes over: its
// first gap marker is a restart gap and the stream rebuilds a LIST.
func standbyFailover(t *testing.T, mode string) failover {
	start := time.Now()
	ns := namespace(t, "standby-"+mode, nil)
	lns := namespace(t, "standby-"+mode+"-lease", nil)
	cs := fastClient(t)
	createConfigMaps(t, cs, ns, standbyObjects)
	srv := natstest.StartT(t, natstest.Options{})
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[2]s], initialList: emit}
sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[3]s, name: kubefeed, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms, standby: %[4]s}
`, srv.URL(), ns, lns, mode))

	// A leads and sends the 20,000 objects it found (initialList: emit)
	// before B starts, so that the consumer has every object.
	a := startKubefeed(t, cfg)
	a.waitLogContains(t, "became the leader")
	a.waitReady(t)
	waitDelivered(t, a, standbyObjects)
	b := startKubefeed(t, cfg)
	b.waitLogContains(t, "standing by")
	if mode == "warm" {
		waitWarm(t, b)
	}

	st := kubefeedStream(t, srv.URL())
	perm := rand.New(rand.NewSource(23)).Perm(standbyObjects)
	// 400 changes while A leads, SIGKILLed after 200 of them; 200 more
	// while nobody leads (the Lease lasts 2s).
	var done atomic.Int32
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		standbyChanges(t, cs, ns, 400, &done, func(k int) (string, int) {
			return fmt.Sprintf("c%05d", perm[k]), k % 4
		})
	}()
	for done.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	before := readAPIServerLists(t)
	killedAt := lastSeq(t, st) // the stream's last sequence before the kill
	_ = a.cmd.Process.Kill()
	<-a.done
	<-changed
	// Phase 2 modifies again objects the first phase modified (kind 0),
	// and modifies, deletes and creates others.
	standbyChanges(t, cs, ns, 200, &done, func(k int) (string, int) {
		if k%4 == 0 {
			return fmt.Sprintf("c%05d", perm[k]), 0
		}
		return fmt.Sprintf("c%05d", perm[400+k]), k % 4
	})
	b.waitLogContains(t, "became the leader")

	// A probe made after the failover: once it is in the stream, B
	// delivered, and whatever it had to list is listed.
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Data: map[string]string{"v": "after the kill"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	after := streamFrom(t, st, killedAt+1, func(evs []got) bool {
		for _, e := range evs {
			if e.Name == "probe" {
				return true
			}
		}
		return false
	})
	measured := readAPIServerLists(t)
	f := failover{lists: measured.lists - before.lists, watchLists: measured.watchLists - before.watchLists}
	t.Logf("%s standby: LIST configmaps %v -> %v, watch-lists %v -> %v", mode, before.lists, measured.lists, before.watchLists, measured.watchLists)

	var gaps []string
	for _, e := range after {
		if e.Type == event.TypeGap {
			var g struct {
				Data event.GapData `json:"data"`
			}
			_ = json.Unmarshal(e.raw, &g)
			gaps = append(gaps, g.Data.Reason)
		}
	}
	if len(gaps) == 0 || gaps[0] != "restart" {
		t.Errorf("gap markers after the failover: %v, want a restart gap first", gaps)
	}
	eventuallyRebuilds(t, func() [][]byte { return streamLines(t, srv.URL()) }, func() map[string]map[string]any {
		return listed(t, []string{ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"})
	})
	t.Logf("%s standby failover test took %v", mode, time.Since(start).Round(time.Millisecond))
	return f
}

// fastClient is an admin clientset without client-side rate limiting,
// speaking protobuf, for bulk writes.
func fastClient(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	rc := cp.Config()
	rc.QPS = -1
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	return kubernetes.NewForConfigOrDie(rc)
}

// createConfigMaps creates c00000… in ns, about 200 bytes of data each.
func createConfigMaps(t *testing.T, cs kubernetes.Interface, ns string, n int) {
	t.Helper()
	pad := strings.Repeat("x", 190)
	g := errgroup.Group{}
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%05d", i)},
				Data:       map[string]string{"v": "0", "pad": pad},
			}, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("create %d configmaps: %v", n, err)
	}
}

// standbyChanges makes n changes with 4 writers; op(k) names the object of
// change k and its kind: 0 and 1 modify it, 2 deletes it, 3 creates a new
// object instead. done counts the changes made.
func standbyChanges(t *testing.T, cs kubernetes.Interface, ns string, n int, done *atomic.Int32, op func(k int) (string, int)) {
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps(ns)
	seq := done.Load()
	g := errgroup.Group{}
	g.SetLimit(4)
	for k := range n {
		g.Go(func() error {
			defer done.Add(1)
			name, kind := op(k)
			var err error
			switch kind {
			case 0, 1:
				patch := fmt.Sprintf(`{"data":{"v":"%d-%d"}}`, seq, k)
				_, err = cms.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			case 2:
				err = cms.Delete(ctx, name, metav1.DeleteOptions{})
			case 3:
				name = fmt.Sprintf("n%d-%05d", seq, k)
				_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "new"}}, metav1.CreateOptions{})
			}
			if err != nil {
				return fmt.Errorf("change %d (kind %d) of %s: %w", k, kind, name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Error(err)
	}
}

// apiserverLists are the API server's counts of LIST requests for
// configmaps and of configmap watch-lists (watches with
// sendInitialEvents=true, which client-go's informers use for their lists).
// A watch-list shows in apiserver_request_total only once the watch ends
// (as a WATCH); apiserver_watch_list_duration_seconds counts it as soon as
// its initial events were sent.
type apiserverLists struct{ lists, watchLists float64 }

var (
	requestTotalRE   = regexp.MustCompile(`(?m)^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$`)
	watchListCountRE = regexp.MustCompile(`(?m)^apiserver_watch_list_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$`)
)

func readAPIServerLists(t *testing.T) apiserverLists {
	t.Helper()
	cs, _ := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	var l apiserverLists
	sum := func(re *regexp.Regexp, labels ...string) float64 {
		s := 0.0
	series:
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			for _, want := range labels {
				if !strings.Contains(m[1], want) {
					continue series
				}
			}
			v, _ := strconv.ParseFloat(m[2], 64)
			s += v
		}
		return s
	}
	l.lists = sum(requestTotalRE, `verb="LIST"`, `group=""`, `resource="configmaps"`)
	l.watchLists = sum(watchListCountRE, `group=""`, `resource="configmaps"`)
	if !strings.Contains(string(b), "apiserver_watch_list_duration_seconds_count{") {
		t.Fatal("the API server's metrics have no apiserver_watch_list_duration_seconds: watch-lists cannot be counted")
	}
	return l
}

var deliveredRE = regexp.MustCompile(`(?m)^kubefeed_events_delivered_total\{[^}]*\} ([0-9.e+]+)$`)

// waitDelivered waits until p's sinks acknowledged n events.
func waitDelivered(t *testing.T, p *kfProc, n float64) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		sum := 0.0
		for _, m := range deliveredRE.FindAllStringSubmatch(scrape(t, p.metrics), -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			sum += v
		}
		if sum >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed delivered %v events in 45s, want %v", sum, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitWarm waits until the standby p answers /readyz with 200 "standby,
// warm" and its kubefeed_standby_warm gauge is 1.
func waitWarm(t *testing.T, p *kfProc) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for {
		resp, err := hc.Get("http://" + p.metrics + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %q", resp.StatusCode, strings.TrimSpace(string(body)))
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "standby, warm" {
				break
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Errorf("the standby's /readyz after 20s: %s, want 200 \"standby, warm\"", last)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := metricValue(t, scrape(t, p.metrics), "kubefeed_standby_warm"); v != 1 {
		t.Errorf("kubefeed_standby_warm = %v while /readyz says warm, want 1", v)
	}
}

// kubefeedStream is the sink's stream on the NATS server at url.
func kubefeedStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natstest.JetStream(t, url).Stream(ctx, "KUBEFEED")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func lastSeq(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// streamFrom reads the stream from sequence first on until until(what was
// read) holds, and returns what it read.
func streamFrom(t *testing.T, st jetstream.Stream, first uint64, until func([]got) bool) []got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []got
	next := first
	for {
		last := lastSeq(t, st)
		for ; next <= last; next++ {
			m, err := st.GetMsg(ctx, next)
			if err != nil {
				t.Fatalf("stream message %d: %v", next, err)
			}
			var e got
			if err := json.Unmarshal(m.Data, &e); err != nil {
				t.Fatalf("stream message %d: %v", next, err)
			}
			e.raw = m.Data
			out = append(out, e)
		}
		if until(out) {
			return out
		}
		if ctx.Err() != nil {
			t.Fatalf("not in the stream after 60s; %d events since sequence %d:\n%s", len(out), first, summary(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
