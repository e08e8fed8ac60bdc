package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	feed "github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// runSnapshot runs `kubefeed snapshot` and returns its exit code and
// output.
func runSnapshot(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(kubefeedBinary(t), append([]string{"snapshot", "--kubeconfig", cp.Kubeconfig()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	return cmd.ProcessState.ExitCode(), out.String()
}

// A snapshot asked for with `kubefeed snapshot` while a writer changes,
// creates and deletes ConfigMaps, on two replicas with leader election
// (the leader runs it; the standby does not): every object that lived
// through it appears exactly once between started and completed, no
// snapshot event of an object follows a newer change of it, and a
// consumer that starts at snapshot.started ends equal to a LIST, as does
// one that reads the whole stream with FromSnapshot.
func TestSnapshotDuringSteadyChanges(t *testing.T) {
	ns := namespace(t, "snapshot", nil)
	reqNS := namespace(t, "snapshot-requests", nil)
	cs, _ := clients(t)
	ctx := context.Background()
	const objects = 800
	for i := range objects {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv := natstest.StartT(t, natstest.Options{})
	cfg := snapshotConfig(t, srv.URL(), reqNS, "  - {resource: configmaps, namespaces: ["+ns+"], initialList: emit}\n", fmt.Sprintf(`checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: %[2]s, name: kubefeed, leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 1s}
`, srv.URL(), reqNS))
	a := startKubefeed(t, cfg)
	b := startKubefeed(t, cfg)
	waitStream(t, srv.URL(), objects)

	// The writers: changes to the ConfigMaps that live through the
	// snapshot (a merge patch each, one request); tmp-* ones created and
	// deleted. Four at once: a snapshot of 805 objects takes tens of
	// milliseconds, and changes must reach the stream meanwhile.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	for w := range 4 {
		writer.Add(1)
		go func() {
			defer writer.Done()
			rng := rand.New(rand.NewPCG(7, uint64(11+w)))
			for v := 1; ; v++ {
				select {
				case <-stop:
					return
				default:
				}
				switch r := rng.IntN(10); {
				case r < 7:
					patch := fmt.Sprintf(`{"data":{"v":"%d-%d"}}`, w, v)
					_, _ = cs.CoreV1().ConfigMaps(ns).Patch(ctx, fmt.Sprintf("cm-%d", rng.IntN(objects)), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				case r < 9:
					_, _ = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tmp-%d", rng.IntN(30))}}, metav1.CreateOptions{})
				default:
					err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, fmt.Sprintf("tmp-%d", rng.IntN(30)), metav1.DeleteOptions{})
					if err != nil && !apierrors.IsNotFound(err) {
						t.Error(err)
					}
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	code, out := runSnapshot(t, "--scope", "configmaps/"+ns, "--sink", "feed", "-n", reqNS, "--timeout", "2m")
	time.Sleep(500 * time.Millisecond)
	close(stop)
	writer.Wait()
	if code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("kubefeed snapshot: exit %d\n%s\nA:\n%s\nB:\n%s", code, out, a.logs.String(), b.logs.String())
	}
	// kubectl shows the request and its outcome.
	shown := kubectl(t, "", "get", "configmaps", "-n", reqNS, "-l", "kubefeed.io/snapshot", "-L", "kubefeed.io/snapshot")
	if !strings.Contains(shown, "completed") {
		t.Errorf("kubectl get does not show the request completed:\n%s", shown)
	}

	// The stream settles on the cluster's state.
	list := func() map[string]string {
		l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, c := range l.Items {
			m[c.Name] = c.ResourceVersion
		}
		return m
	}
	type build struct {
		whole, late, fromSnapshot map[string]string
		evs                       []*feed.Event
	}
	read := func() build {
		var evs []*feed.Event
		for _, line := range streamLines(t, srv.URL()) {
			e, err := feed.Decode(line)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e)
		}
		startedAt := -1
		for i, e := range evs {
			if e.Type == feed.TypeSnapshotStarted {
				startedAt = i
			}
		}
		rv := func(s *feed.State) map[string]string {
			m := map[string]string{}
			for k, e := range s.Objects() {
				m[k.Name] = e.ResourceVersion
			}
			return m
		}
		whole, late, fs := feed.New(feed.Options{}), feed.New(feed.Options{}), feed.New(feed.Options{FromSnapshot: true})
		for i, e := range evs {
			if err := whole.Apply(e); err != nil {
				t.Fatal(err)
			}
			if err := fs.Apply(e); err != nil {
				t.Fatal(err)
			}
			if startedAt >= 0 && i >= startedAt {
				if err := late.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
		}
		return build{rv(whole), rv(late), rv(fs), evs}
	}
	var got build
	want := list()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = read()
		if reflect.DeepEqual(got.whole, want) && reflect.DeepEqual(got.late, want) && reflect.DeepEqual(got.fromSnapshot, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream does not rebuild the LIST:\nLIST %v\nwhole %v\nfrom snapshot.started %v\nFromSnapshot %v", want, got.whole, got.late, got.fromSnapshot)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Between the markers: each cm-* once, tmp-* at most once; each at the
	// version of the last change of it sent before.
	started, completed := 0, 0
	in := false
	seen := map[string]int{}
	lastRV := map[string]string{} // uid -> rv of the last change
	count, during := 0, 0
	for _, e := range got.evs {
		switch {
		case e.Type == feed.TypeSnapshotStarted:
			started++
			in = true
		case e.Type == feed.TypeSnapshotCompleted:
			completed++
			in = false
			if !strings.Contains(string(e.Data), fmt.Sprintf(`"count":%d`, count)) {
				t.Errorf("completed %s after %d snapshot events", e.Data, count)
			}
		case e.Change() == feed.Snapshotted:
			if !in {
				t.Errorf("snapshot event %s outside its markers (%d started, %d completed before it)", e.ID, started, completed)
			}
			seen[e.Name]++
			count++
			if lastRV[e.UID] != e.ResourceVersion {
				t.Errorf("snapshot of %s at %s, but the last change sent of it was at %q", e.Name, e.ResourceVersion, lastRV[e.UID])
			}
		case e.Change() == feed.Deleted:
			delete(lastRV, e.UID)
		default:
			lastRV[e.UID] = e.ResourceVersion
		}
		if in && e.Change() != "" && e.Change() != feed.Snapshotted {
			during++
		}
	}
	if during == 0 {
		t.Errorf("no change reached the stream while the snapshot ran: the test did not test it")
	}
	t.Logf("%d snapshot events, %d changes between the markers", count, during)
	if started != 1 || completed != 1 {
		t.Fatalf("%d started and %d completed markers (one replica must run it, once)", started, completed)
	}
	for i := range objects {
		if n := seen[fmt.Sprintf("cm-%d", i)]; n != 1 {
			t.Errorf("cm-%d appears %d times in the snapshot", i, n)
		}
	}
	for name, n := range seen {
		if strings.HasPrefix(name, "tmp-") && n > 1 {
			t.Errorf("%s appears %d times in the snapshot", name, n)
		}
	}
}

// A request kubefeed cannot run fails visibly: the request says why, and
// `kubefeed snapshot` exits 2 with it; a bad --scope is a usage error.
func TestSnapshotRequestForAResourceNotWatchedFails(t *testing.T) {
	ns := namespace(t, "snapshot-bad", nil)
	srv := natstest.StartT(t, natstest.Options{})
	cfg := snapshotConfig(t, srv.URL(), ns, "  - {resource: configmaps, namespaces: ["+ns+"]}\n  - {resource: namespaces, labelSelector: kubefeed-test=none}\n", "")
	startKubefeedReady(t, cfg)
	// A resource is named as in the config: a short name or a kind too.
	for _, name := range []string{"cm", "ConfigMap"} {
		if code, out := runSnapshot(t, "--scope", name+"/"+ns, "--config", cfg, "--timeout", "1m"); code != 0 || !strings.Contains(out, "configmaps") {
			t.Fatalf("--scope %s/%s: exit %d, want 0 covering configmaps:\n%s", name, ns, code, out)
		}
	}
	// A namespace names no object of a cluster-scoped resource.
	if code, out := runSnapshot(t, "--scope", "namespaces/default", "--config", cfg, "--timeout", "1m"); code != 2 || !strings.Contains(out, "no watched resource matches namespaces") {
		t.Fatalf("a cluster-scoped resource in a namespace: exit %d, want 2:\n%s", code, out)
	}
	code, out := runSnapshot(t, "--scope", "secrets", "--config", cfg, "--timeout", "1m")
	if code != 2 || !strings.Contains(out, "no watched resource matches secrets") {
		t.Fatalf("exit %d, want 2 naming the resource:\n%s", code, out)
	}
	if code, out := runSnapshot(t, "--scope", "configmaps/Bad_NS", "-n", ns); code != 1 || !strings.Contains(out, "bad namespace") {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	code, out = runSnapshot(t, "--sink", "nope", "-n", ns, "--timeout", "1m")
	if code != 2 || !strings.Contains(out, `no sink named "nope"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// verify --from-snapshot checks the feed from its last completed
// snapshot: an object the feed held before it (its deletion lost) and the
// snapshot did not show is dropped and counted, where a plain verify
// reports it EXTRA.
func TestVerifyFromSnapshotDropsWhatTheSnapshotDidNotShow(t *testing.T) {
	ns := namespace(t, "snapshot-verify", nil)
	cs, _ := clients(t)
	for i := range 5 {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv := natstest.StartT(t, natstest.Options{})
	cfg := snapshotConfig(t, srv.URL(), ns, "  - {resource: configmaps, namespaces: ["+ns+"], initialList: emit}\n", "")
	startKubefeedReady(t, cfg)
	waitStream(t, srv.URL(), 5)
	// A ConfigMap the feed says was added, whose deletion it lost.
	ghost, err := event.Marshal(&event.Event{
		SpecVersion: event.SpecVersion, ID: "ghost-uid.1.added", Source: "kubefeed/test", Type: event.Added.Type(), Time: time.Now().UTC(),
		DataContentType: event.DataContentType, Cluster: "test", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps",
		Namespace: ns, Name: "ghost", UID: "ghost-uid", ResourceVersion: "1",
		Data: &event.ChangeData{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "ghost", "namespace": ns, "uid": "ghost-uid", "resourceVersion": "1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("kubefeed.test.core.configmaps."+ns+".added", ghost); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	waitStream(t, srv.URL(), 6)
	if r := runVerify(t, cfg, "feed"); r.code != 3 || !strings.Contains(r.stdout, "ghost") {
		t.Fatalf("plain verify: want exit 3 naming ghost; %s", r)
	}
	if r := runVerify(t, cfg, "feed", "--from-snapshot"); r.code != 2 || !strings.Contains(r.stderr, "no completed snapshot") {
		t.Fatalf("--from-snapshot without a snapshot: want exit 2; %s", r)
	}
	if code, out := runSnapshot(t, "--config", cfg, "--timeout", "1m"); code != 0 {
		t.Fatalf("kubefeed snapshot: exit %d\n%s", code, out)
	}
	r := runVerify(t, cfg, "feed", "--from-snapshot")
	if r.code != 0 || !strings.Contains(r.stdout, "(1 dropped as not shown by it)") {
		t.Fatalf("--from-snapshot: want exit 0 with ghost dropped; %s", r)
	}
}

// snapshotConfig writes a config with the watch rules watch (YAML list
// items), the jetstream sink "feed" of the NATS server at url, snapshot
// requests in reqNS, and extra top-level YAML.
func snapshotConfig(t *testing.T, url, reqNS, watch, extra string) string {
	t.Helper()
	return writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
%ssinks:
  - name: feed
    jetstream: {servers: [%s], stream: KUBEFEED, provision: {}}
snapshots: {namespace: %s}
%s`, watch, url, reqNS, extra))
}
