package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/test/cluster"
)

// kubectl runs the real kubectl (built by test/tools/build.sh) against the
// test control plane.
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	bin, err := cluster.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", cp.Kubeconfig()}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+filepath.Join(t.TempDir(), "cache"))
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// attributed is a recorded event with what attribution adds.
type attributed struct {
	Type            string `json:"type"`
	ResourceVersion string `json:"resourceversion"`
	ChangedByExt    string `json:"changedby"`
	Data            struct {
		Object    map[string]any       `json:"object"`
		Patch     []map[string]any     `json:"patch"`
		ChangedBy []event.FieldManager `json:"changedBy"`
	} `json:"data"`
}

// gatedRecorder records events; while held, Send waits (the key stays in
// flight, so later changes of the object merge into one event).
type gatedRecorder struct {
	mu   sync.Mutex
	evs  []attributed
	gate chan struct{} // nil: open
}

func (g *gatedRecorder) Send(ctx context.Context, evs []*event.Event) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range evs {
		b, err := event.Marshal(e)
		if err != nil {
			return sinks.Permanent(err)
		}
		if bytes.Contains(b, []byte("managedFields")) {
			return sinks.Permanent(fmt.Errorf("managedFields in an event: %s", b))
		}
		var a attributed
		if err := json.Unmarshal(b, &a); err != nil {
			return sinks.Permanent(err)
		}
		g.evs = append(g.evs, a)
	}
	return nil
}

func (g *gatedRecorder) Close(context.Context) error { return nil }

func (g *gatedRecorder) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedRecorder) release() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

// waitRV waits for the event of resourceVersion rv.
func (g *gatedRecorder) waitRV(t *testing.T, rv string) attributed {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.mu.Lock()
		for _, e := range g.evs {
			if e.ResourceVersion == rv {
				g.mu.Unlock()
				return e
			}
		}
		n := len(g.evs)
		g.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no event of resourceVersion %s (%d events)", rv, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func managerList(fms []event.FieldManager) string {
	var out []string
	for _, f := range fms {
		s := f.Manager + "/" + f.Operation
		if f.Subresource != "" {
			s += "/" + f.Subresource
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// The managers the API server recorded for a change, as kubefeed must name
// them: kubectl create, kubectl patch, a server-side apply with
// --field-manager, kubectl scale (the scale subresource), and two managers
// whose changes merged into one event.
func TestAttributionNamesTheFieldManagers(t *testing.T) {
	ns := namespace(t, "attribution", nil)
	rec := &gatedRecorder{}
	startExporter(t, fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: deployments.apps, namespaces: [%s], attribution: managers}
sinks:
  - {name: rec, stdout: {}}
`, ns), map[string]sinks.Sink{"rec": rec})
	cs, _ := clients(t)
	deploy := func() (rv string, mf []metav1.ManagedFieldsEntry) {
		d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.ResourceVersion, d.ManagedFields
	}
	manifest := func(image string) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: %q}]}
`, ns, image)
	}
	expect := func(step, rv, change, want string) {
		t.Helper()
		e := rec.waitRV(t, rv)
		if e.Type != event.TypePrefix+change {
			t.Errorf("%s: %s, want %s", step, e.Type, change)
		}
		if got := managerList(e.Data.ChangedBy); got != want {
			t.Errorf("%s: changedBy %s, want %s (patch %v)", step, got, want, e.Data.Patch)
		}
		var names []string
		for _, f := range e.Data.ChangedBy {
			names = append(names, f.Manager)
			if f.Time == "" && f.Subresource != "scale" { // the API server records no time for scale
				_, mf := deploy()
				t.Errorf("%s: %s without a time; the API server recorded %+v", step, f.Manager, mf)
			}
		}
		if e.ChangedByExt != strings.Join(names, ",") {
			t.Errorf("%s: changedby extension %q, data %v", step, e.ChangedByExt, names)
		}
	}

	kubectl(t, manifest("app:1"), "create", "-f", "-")
	rv, mf := deploy()
	if len(mf) != 1 {
		t.Fatalf("kubectl create recorded %d managers: %+v", len(mf), mf)
	}
	expect("kubectl create", rv, "added", mf[0].Manager+"/Update")

	kubectl(t, "", "-n", ns, "patch", "deployment", "web", "--type=merge", "-p", `{"metadata":{"labels":{"tier":"gold"}}}`)
	rv, _ = deploy()
	expect("kubectl patch", rv, "modified", "kubectl-patch/Update")

	kubectl(t, manifest("app:2"), "apply", "--server-side", "--field-manager=ops-bot", "--force-conflicts", "-f", "-")
	rv, _ = deploy()
	expect("server-side apply", rv, "modified", "ops-bot/Apply")

	kubectl(t, "", "-n", ns, "scale", "deployment", "web", "--replicas=5")
	rv, mf = deploy()
	var scaler string
	for _, m := range mf {
		if m.Subresource == "scale" {
			scaler = m.Manager
		}
	}
	if scaler == "" {
		t.Fatalf("kubectl scale recorded no scale subresource entry: %+v", mf)
	}
	expect("kubectl scale", rv, "modified", scaler+"/Update/scale")
	// Again: the scale entry exists already, and has no time to move.
	kubectl(t, "", "-n", ns, "scale", "deployment", "web", "--replicas=7")
	rv, _ = deploy()
	expect("kubectl scale again", rv, "modified", scaler+"/Update/scale")

	// Two managers whose changes merge: the first change is held in
	// flight, the next two land meanwhile and leave as one event.
	rec.hold()
	patch := func(manager, label string) string {
		d, err := cs.AppsV1().Deployments(ns).Patch(context.Background(), "web", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+label+`":"x"}}}`), metav1.PatchOptions{FieldManager: manager})
		if err != nil {
			t.Fatal(err)
		}
		return d.ResourceVersion
	}
	held := patch("one", "held")
	time.Sleep(300 * time.Millisecond) // the worker is sending it
	patch("bot-a", "a")
	merged := patch("bot-b", "b")
	// The release must find both versions in the cache: the watch brings
	// them a moment after the writes returned.
	time.Sleep(time.Second)
	rec.release()
	expect("the held change", held, "modified", "one/Update")
	expect("two managers at once", merged, "modified", "bot-a/Update,bot-b/Update")
}
