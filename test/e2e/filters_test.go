package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/sinks"
)

func TestSecretValuesNeverLeave(t *testing.T) {
	ns := namespace(t, "secrets", nil)
	bin := kubefeedBinary(t)
	out := writeFile(t, "unused", "")
	cfg := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: secrets\n    namespaces: [secrets]\n    oldObject: true\nsinks:\n  - name: file\n    file: {path: "+out+".jsonl}\n")
	cmd := exec.Command(bin, "run", "--config", cfg, "--kubeconfig", cp.Kubeconfig(), "--log-level", "debug")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "caches synced") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cs, _ := clients(t)
	ctx := context.Background()
	const plain1, plain2 = "hunter2-first-secret", "correct-horse-battery"
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": `{"stringData":{"password":"` + plain1 + `"}}`,
	}}, StringData: map[string]string{"password": plain1}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, "db", types.MergePatchType, []byte(`{"stringData":{"password":"`+plain2+`"},"metadata":{"labels":{"rotated":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for len(readLines(t, out+".jsonl")) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	lines := readLines(t, out+".jsonl")
	if len(lines) != 2 {
		t.Fatalf("%d events, want 2", len(lines))
	}
	all := append(bytes.Join(lines, nil), logs.Bytes()...)
	// Values are stored base64-encoded in data: search both forms.
	for _, plain := range []string{plain1, plain2, b64(plain1), b64(plain2)} {
		if bytes.Contains(all, []byte(plain)) {
			t.Errorf("secret value %q found in the events or logs", plain)
		}
	}
	var mod got
	_ = jsonUnmarshal(lines[1], &mod)
	if mod.change() != "modified" || !strings.Contains(string(lines[1]), `"/data/password"`) || !strings.Contains(string(lines[1]), "<redacted>") {
		t.Errorf("modified secret event does not show a redacted change of /data/password: %s", lines[1])
	}
}

func b64(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	b := []byte(s)
	for i := 0; i < len(b); i += 3 {
		var n uint32
		rem := len(b) - i
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < rem {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < 4; j++ {
			if j <= rem {
				out = append(out, enc[(n>>(18-6*j))&63])
			} else {
				out = append(out, '=')
			}
		}
	}
	return string(out)
}

func TestNodeHeartbeatEmitsNothing(t *testing.T) {
	rec := &recorder{}
	startExporter(t, cfgFor("  - resource: nodes\n    fieldSelector: metadata.name=hb-node\n"), map[string]sinks.Sink{"rec": rec})
	cs, _ := clients(t)
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "hb-node"}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	cond := func(hb time.Time) []byte {
		return []byte(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","lastTransitionTime":"2026-01-01T00:00:00Z","lastHeartbeatTime":"` + hb.UTC().Format(time.RFC3339) + `"}]}}`)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "hb-node", types.StrategicMergePatchType, cond(base), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2) // the condition appears: a real change
	for i := 1; i <= 5; i++ {
		if _, err := cs.CoreV1().Nodes().Patch(ctx, "hb-node", types.StrategicMergePatchType, cond(base.Add(time.Duration(i)*time.Minute)), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
	}
	rec.quiet(t, 2, 500*time.Millisecond)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "hb-node", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, 3)
	if p := evs[2].Data.ChangedPaths; len(p) != 1 || p[0] != "/spec/unschedulable" {
		t.Errorf("spec change after heartbeats: changedPaths %v, want [/spec/unschedulable]", p)
	}
}

func TestFilterExpressionsAndRouting(t *testing.T) {
	ns := namespace(t, "cel", nil)
	failures, specs, everything := &recorder{}, &recorder{}, &recorder{}
	startExporter(t, `apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - resource: configmaps
    namespaces: [cel]
    filter: "type == 'MODIFIED' && object.data.phase == 'Failed'"
    sinks: [failures, everything]
  - resource: configmaps
    namespaces: [cel]
    filter: "changedPaths.exists(p, p.startsWith('/data/spec'))"
    sinks: [specs, everything]
sinks:
  - {name: failures, stdout: {}}
  - {name: specs, stdout: {}}
  - {name: everything, stdout: {}}
`, map[string]sinks.Sink{"failures": failures, "specs": specs, "everything": everything})
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()
	if _, err := cms.Create(ctx, cm("job", nil, map[string]any{"phase": "Running"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := func(p string) {
		if _, err := cms.Patch(ctx, "job", types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"data":{"phase":"Failed"}}`)
	patch(`{"data":{"spec":"v2"}}`)
	failures.waitFor(t, 1)
	specs.waitFor(t, 1)
	// Both rules match the spec change for "everything": one event, not two.
	everything.waitFor(t, 2)
	failures.quiet(t, 2, 500*time.Millisecond) // the spec change: phase is still Failed
	specs.quiet(t, 1, 0)
	everything.quiet(t, 2, 0)
	if e := specs.snapshot()[0]; e.Data.ChangedPaths[0] != "/data/spec" {
		t.Errorf("spec sink got %v", e.Data.ChangedPaths)
	}
}

func TestValidateRejectsBadExpressions(t *testing.T) {
	bin := kubefeedBinary(t)
	for _, tc := range []struct{ expr, want string }{
		{"type == ", "c.yaml:5:20: watch[0].filter: bad expression: Syntax error"},
		{"object.x ==== 1", "c.yaml:5:24: watch[0].filter: bad expression"},
		{"type + 1", "no matching overload"},
		{`"'just a string'"`, "must be a bool"},
		{"nosuch == 1", "undeclared reference to 'nosuch'"},
	} {
		cfg := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\n    filter: "+tc.expr+"\nsinks:\n  - {name: out, stdout: {}}\n")
		cmd := exec.Command(bin, "validate", "--config", cfg)
		out, _ := cmd.CombinedOutput()
		text := strings.ReplaceAll(string(out), cfg, "c.yaml")
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(text, tc.want) {
			t.Errorf("%q: exit %d, output %s; want exit 1 and %q", tc.expr, cmd.ProcessState.ExitCode(), text, tc.want)
		}
	}
}
