package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// verifyRun is one `kubefeed verify` run.
type verifyRun struct {
	code           int
	stdout, stderr string
}

func runVerify(t *testing.T, cfg, sink string, extra ...string) verifyRun {
	t.Helper()
	return runVerifyOn(t, cp.Kubeconfig(), cfg, sink, extra...)
}

// runVerifyOn runs `kubefeed verify` against the API server of kubeconfig.
func runVerifyOn(t *testing.T, kubeconfig, cfg, sink string, extra ...string) verifyRun {
	t.Helper()
	args := append([]string{"verify", "--config", cfg, "--sink", sink, "--kubeconfig", kubeconfig, "--timeout", "1m"}, extra...)
	cmd := exec.Command(kubefeedBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	return verifyRun{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

func (r verifyRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// verifyMatches runs `kubefeed verify` on sink of the config at cfgPath
// against the API server of kubeconfig and fails the test, with verify's
// report, unless it exits 0 having compared exactly objects objects. The
// fault tests call it once the stream rebuilds the LISTed state, so any
// difference verify reports there is either a loss the test's own consumer
// missed or a false positive of verify.
func verifyMatches(t *testing.T, kubeconfig, cfgPath, sink string, objects int) {
	t.Helper()
	r := runVerifyOn(t, kubeconfig, cfgPath, sink)
	want := fmt.Sprintf("ok: the feed matches the cluster (%d objects compared;", objects)
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("verify after the feed caught up: want exit 0 and %q; %s", want, r)
	}
}

// verifyJSON is the part of `verify -o json` the tests read.
type verifyJSON struct {
	Match       bool `json:"match"`
	Compared    int  `json:"compared"`
	Differences []struct {
		Object  string `json:"object"`
		Problem string `json:"problem"`
		Key     struct {
			Resource, Namespace, Name string
		} `json:"key"`
		Feed    *struct{ ResourceVersion string } `json:"feed"`
		Cluster *struct{ ResourceVersion string } `json:"cluster"`
		Paths   []string                          `json:"paths"`
	} `json:"differences"`
	Gaps []struct {
		Reason string `json:"reason"`
	} `json:"gaps"`
}

func TestVerifyJetStreamSink(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ns := namespace(t, "verify", nil)
	dir := t.TempDir()
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
sinks:
  - name: audit
    jetstream: {servers: [%[2]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
  - name: console
    stdout: {}
checkpoint:
  file: {path: %[3]s}
`, ns, srv.URL(), filepath.Join(dir, "checkpoint.db")))
	_, dyn := clients(t)
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace(ns)

	// Changes while kubefeed runs, then a clean stop.
	d := startDaemon(t, cfg)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := cms.Create(ctx, cm(name, nil, map[string]any{"k": "v"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Object["data"] = map[string]any{"k": "v2", "big": "9007199254740993"}
	a.SetAnnotations(map[string]string{"example.com/note": "a key with a slash"})
	a, err = cms.Update(ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aRV, aUID := a.GetResourceVersion(), string(a.GetUID())
	if err := cms.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStream(t, srv.URL(), 5) // added a, b, c; modified a; deleted b
	if err := d.term(t); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.logs.String())
	}
	if r := runVerify(t, cfg, "audit"); r.code != 0 || !strings.Contains(r.stdout, "ok: the feed matches the cluster (2 objects compared") {
		t.Fatalf("after a clean stop: %s", r)
	}

	// While kubefeed is down: a new object, a changed one, a deleted one.
	if _, err := cms.Create(ctx, cm("late", nil, map[string]any{"k": "v"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := cms.Get(ctx, "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	feedRV := c.GetResourceVersion()
	c.Object["data"] = map[string]any{"k": "changed"}
	c, err = cms.Update(ctx, c, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := runVerify(t, cfg, "audit")
	if r.code != 3 {
		t.Fatalf("with changes kubefeed missed: %s", r)
	}
	for _, want := range []string{
		"MISSING  configmaps/" + ns + "/late  not in the feed",
		"EXTRA    configmaps/" + ns + "/a  in the feed at resourceVersion " + aRV + " (event " + aUID + "." + aRV + ".modified), gone from the cluster",
		fmt.Sprintf("VERSION  configmaps/%s/c  the feed has resourceVersion %s, the cluster %s; they differ at /data/k", ns, feedRV, c.GetResourceVersion()),
		"3 objects differ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r)
		}
	}
	if !strings.Contains(r.stderr, "3 of 3 objects differ between sink audit and the cluster") {
		t.Errorf("stderr: %s", r.stderr)
	}
	r = runVerify(t, cfg, "audit", "-o", "json")
	var rep verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 3 {
		t.Fatalf("json report (%v): %s", err, r)
	}
	if rep.Match || rep.Compared != 3 || len(rep.Differences) != 3 {
		t.Fatalf("json report: %+v", rep)
	}
	a0, c0, l0 := rep.Differences[0], rep.Differences[1], rep.Differences[2] // sorted by object
	if a0.Problem != "extra" || a0.Key.Name != "a" || a0.Feed == nil || a0.Feed.ResourceVersion != aRV || a0.Cluster != nil {
		t.Errorf("difference of a: %+v", a0)
	}
	if c0.Problem != "version" || c0.Key.Name != "c" || c0.Feed.ResourceVersion != feedRV || c0.Cluster.ResourceVersion != c.GetResourceVersion() || strings.Join(c0.Paths, ",") != "/data/k" {
		t.Errorf("difference of c: %+v", c0)
	}
	if l0.Problem != "missing" || l0.Object != "configmaps/"+ns+"/late" || l0.Feed != nil || l0.Cluster == nil {
		t.Errorf("difference of late: %+v", l0)
	}

	// kubefeed recovers what it missed: the feed matches again.
	d = startDaemon(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for r = runVerify(t, cfg, "audit", "-o", "json"); r.code != 0; r = runVerify(t, cfg, "audit", "-o", "json") {
		if time.Now().After(deadline) {
			t.Fatalf("verify after the restart: %s\nkubefeed:\n%s", r, d.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep = verifyJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Match || rep.Compared != 2 || len(rep.Gaps) == 0 || rep.Gaps[0].Reason != "restart" {
		t.Errorf("after the restart (%v): %+v\n%s", err, rep, r.stdout)
	}
	d.kill()
}

func TestVerifyRejectsSinksItCannotRead(t *testing.T) {
	cfg := writeFile(t, "c.yaml", `apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - {resource: configmaps}
sinks:
  - name: console
    stdout: {}
  - name: audit
    jetstream: {servers: [nats://127.0.0.1:1], stream: KUBEFEED}
`)
	for _, tc := range []struct {
		sink string
		code int
		want string
	}{
		{"nope", 1, `no sink named "nope" in the config (its sinks: console, audit)`},
		{"console", 1, `sink "console" is a stdout sink: verify reads what a jetstream sink stored in its stream`},
		{"audit", 2, "nats nats://127.0.0.1:1 not reachable"},
	} {
		t.Run(tc.sink, func(t *testing.T) {
			r := runVerify(t, cfg, tc.sink)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want exit %d and %q; %s", tc.code, tc.want, r)
			}
		})
	}
	if r := runVerify(t, writeFile(t, "bad.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch: [{resource: configmaps, namespace: [a]}]\nsinks: [{name: audit, stdout: {}}]\n"), "audit"); r.code != 1 || !strings.Contains(r.stderr, `unknown key "namespace"`) {
		t.Errorf("bad config: %s", r)
	}
}

// waitStream waits until the stream holds at least n messages.
func waitStream(t *testing.T, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(streamLines(t, url)) < n {
		if time.Now().After(deadline) {
			// The messages themselves tell coalescing (an added at the
			// latest version, a retraction) from a lost event.
			var b strings.Builder
			for _, m := range streamLines(t, url) {
				fmt.Fprintf(&b, "\n  %.300s", m)
			}
			t.Fatalf("the stream holds %d messages, want %d:%s", len(streamLines(t, url)), n, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamEvents decodes the stream's messages (the fields the verify tests
// read).
func streamEvents(t *testing.T, url string) []got {
	t.Helper()
	var out []got
	for _, b := range streamLines(t, url) {
		var g got
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("stream message %.300s: %v", b, err)
		}
		out = append(out, g)
	}
	return out
}

// waitStreamEvent waits until the stream holds the event of uid that ends
// its id with "."+change, and returns the stream's events.
func waitStreamEvent(t *testing.T, url, uid, change string) []got {
	t.Helper()
	return waitStreamFor(t, url, change+" event of uid "+uid, func(e got) bool {
		return e.UID == uid && strings.HasSuffix(e.ID, "."+change)
	})
}

// waitStreamFor waits until the stream holds an event for which match
// holds, and returns the stream's events.
func waitStreamFor(t *testing.T, url, what string, match func(got) bool) []got {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		evs := streamEvents(t, url)
		for _, e := range evs {
			if match(e) {
				return evs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the stream:\n%s", what, summary(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verifyConfig sends the configmaps of ns to the jetstream sink "feed" of
// the NATS server at url; checkpoint is "" or the checkpoint file.
func verifyConfig(t *testing.T, ns, url, checkpoint string) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%s]}
sinks:
  - name: feed
    jetstream: {servers: [%s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
`, ns, url)
	if checkpoint != "" {
		cfg += "checkpoint:\n  file: {path: " + checkpoint + "}\n"
	}
	return writeFile(t, "c.yaml", cfg)
}

// Issue 21: a deletion lost while kubefeed was down without a checkpoint,
// and the name re-created meanwhile. The feed holds the old incarnation
// (never deleted) and the new one (its modification); the cluster holds
// only the new one. verify must name the old uid as EXTRA and exit 3, not
// say "match" because the name's newest incarnation matches.
func TestVerifyReportsOldIncarnationOfRecreatedName(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ns := namespace(t, "verify-recreated", nil)
	cfg := verifyConfig(t, ns, srv.URL(), "")
	_, dyn := clients(t)
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace(ns)

	d := startDaemon(t, cfg)
	x1, err := cms.Create(ctx, cm("x", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldUID, oldRV := string(x1.GetUID()), x1.GetResourceVersion()
	waitStreamEvent(t, srv.URL(), oldUID, "added")
	if err := d.term(t); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.logs.String())
	}

	// While kubefeed is down (and keeps no checkpoint): x deleted and
	// created again.
	if err := cms.Delete(ctx, "x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	x2, err := cms.Create(ctx, cm("x", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newUID := string(x2.GetUID())

	d = startDaemon(t, cfg)
	x2, err = cms.Patch(ctx, "x", types.MergePatchType, []byte(`{"data":{"k":"v2"}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newRV := x2.GetResourceVersion()
	// With initialList: skip the new incarnation was kubefeed's baseline:
	// the patch is its first event (modified).
	evs := waitStreamFor(t, srv.URL(), "event of uid "+newUID+" at resourceVersion "+newRV, func(e got) bool {
		return e.UID == newUID && e.ResourceVersion == newRV
	})
	for _, e := range evs {
		if e.UID == oldUID && strings.HasSuffix(e.ID, ".deleted") {
			t.Fatalf("the stream holds the old incarnation's deletion, the reproduction needs it lost:\n%s", summary(evs))
		}
	}

	r := runVerify(t, cfg, "feed")
	want := fmt.Sprintf("EXTRA    configmaps/%s/x  in the feed as uid %s at resourceVersion %s (event %s.%s.added), never deleted; the cluster holds this name as uid %s (resourceVersion %s)\n",
		ns, oldUID, oldRV, oldUID, oldRV, newUID, newRV)
	if r.code != 3 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "1 objects differ (2 objects compared;") {
		t.Fatalf("verify of a feed that lost x's old incarnation's deletion: want exit 3 and\n%q\n%s\nstream:\n%s", want, r, summary(evs))
	}
	if !strings.Contains(r.stderr, "1 of 2 objects differ between sink feed and the cluster") {
		t.Errorf("stderr: %s", r.stderr)
	}

	r = runVerify(t, cfg, "feed", "-o", "json")
	var rep struct {
		Match       bool `json:"match"`
		Differences []struct {
			Object  string `json:"object"`
			Problem string `json:"problem"`
			Feed    *struct {
				UID             string `json:"uid"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"feed"`
			Cluster *struct {
				UID string `json:"uid"`
			} `json:"cluster"`
		} `json:"differences"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 3 {
		t.Fatalf("json report (%v): %s", err, r)
	}
	if rep.Match || len(rep.Differences) != 1 {
		t.Fatalf("json report: %s", r.stdout)
	}
	if x := rep.Differences[0]; x.Object != "configmaps/"+ns+"/x" || x.Problem != "extra" || x.Feed == nil || x.Feed.UID != oldUID || x.Feed.ResourceVersion != oldRV || x.Cluster == nil || x.Cluster.UID != newUID {
		t.Errorf("difference: %s", r.stdout)
	}
	d.kill()
}

// The uid changes kubefeed delivers: a name deleted and re-created while
// kubefeed runs, and again while it is down (with a checkpoint: on restart
// it sends the old incarnation's deletion). The feed then holds only the
// cluster's incarnation and verify matches.
func TestVerifyMatchesAcrossUIDChanges(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ns := namespace(t, "verify-uid-change", nil)
	cfg := verifyConfig(t, ns, srv.URL(), filepath.Join(t.TempDir(), "checkpoint.db"))
	_, dyn := clients(t)
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace(ns)
	recreate := func() string {
		t.Helper()
		if err := cms.Delete(ctx, "y", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		u, err := cms.Create(ctx, cm("y", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(u.GetUID())
	}

	d := startDaemon(t, cfg)
	y1, err := cms.Create(ctx, cm("y", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitStreamEvent(t, srv.URL(), string(y1.GetUID()), "added")
	uid2 := recreate() // while kubefeed runs
	waitStreamEvent(t, srv.URL(), string(y1.GetUID()), "deleted")
	waitStreamEvent(t, srv.URL(), uid2, "added")
	if err := d.term(t); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.logs.String())
	}
	if r := runVerify(t, cfg, "feed"); r.code != 0 || !strings.Contains(r.stdout, "ok: the feed matches the cluster (1 objects compared") {
		t.Fatalf("after a uid change kubefeed saw live: %s\nstream:\n%s", r, summary(streamEvents(t, srv.URL())))
	}

	uid3 := recreate() // while kubefeed is down
	d = startDaemon(t, cfg)
	waitStreamEvent(t, srv.URL(), uid2, "deleted")
	evs := waitStreamEvent(t, srv.URL(), uid3, "added")
	if r := runVerify(t, cfg, "feed"); r.code != 0 || !strings.Contains(r.stdout, "ok: the feed matches the cluster (1 objects compared") {
		t.Fatalf("after a uid change kubefeed recovered on restart: %s\nstream:\n%s", r, summary(evs))
	}
	d.kill()
}
