package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/test/cluster"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// kubefeedBinary builds cmd/kubefeed once for the package.
func kubefeedBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubefeed-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "kubefeed")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/kubefeed")
		cmd.Dir = cluster.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			t.Logf("%s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("build kubefeed: %v", binErr)
	}
	return binPath
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateCommand(t *testing.T) {
	bin := kubefeedBinary(t)
	for _, tc := range []struct {
		name, cfg string
		cluster   bool
		code      int
		want      []string
	}{
		{"good", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\nsinks:\n  - {name: out, stdout: {}}\n", true, 0, []string{"ok"}},
		{"unknown key", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\n    namespace: [a]\nsinks:\n  - {name: out, stdout: {}}\n", false, 1, []string{`c.yaml:5:5: unknown key "namespace"`}},
		{"bad selector", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\n    labelSelector: 'a in (b'\nsinks:\n  - {name: out, stdout: {}}\n", false, 1, []string{`c.yaml:5:20: watch[0].labelSelector: bad label selector`}},
		{"duplicate sink", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\nsinks:\n  - {name: out, stdout: {}}\n  - {name: out, stdout: {}}\n", false, 1, []string{`c.yaml:7:12: sinks[1].name: duplicate sink name "out"`}},
		{"unknown resource", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: configmaps\n  - resource: gizmos.nowhere.io\nsinks:\n  - {name: out, stdout: {}}\n", true, 1, []string{`c.yaml:5:15: watch[1].resource: resource "gizmos.nowhere.io" not found`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "c.yaml", tc.cfg)
			args := []string{"validate", "--config", path, "--kubeconfig", cp.Kubeconfig()}
			if tc.cluster {
				args = append(args, "--cluster")
			}
			cmd := exec.Command(bin, args...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out)
			}
			text := strings.ReplaceAll(string(out), path, "c.yaml")
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestValidateClusterReportsMissingPermission(t *testing.T) {
	// A user with no RBAC at all: list/watch are denied and named.
	bin := kubefeedBinary(t)
	kc := writeFile(t, "kubeconfig", strings.Replace(mustRead(t, cp.Kubeconfig()), "token: "+cluster.AdminToken, "token: "+cluster.AdminToken+"\n    as: nobody", 1))
	path := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: secrets\n    namespaces: [default]\nsinks:\n  - {name: out, stdout: {}}\n")
	cmd := exec.Command(bin, "validate", "--cluster", "--config", path, "--kubeconfig", kc)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "watch[0].resource: not allowed to list secrets in namespace default") {
		t.Errorf("exit %d, output:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTailShowsPatchQuickly(t *testing.T) {
	bin := kubefeedBinary(t)
	ns := namespace(t, "tail", nil)
	cs, _ := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cmTyped("t1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "tail", "configmaps", "-n", ns, "-o", "json", "--kubeconfig", cp.Kubeconfig())
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Patch until the informer (started asynchronously) reports it.
	var line string
	for i := 0; line == "" && i < 50; i++ {
		if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "t1", types.MergePatchType, []byte(`{"data":{"k":"`+string(rune('a'+i%26))+`"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		select {
		case line = <-lines:
		case <-time.After(time.Second):
		}
	}
	if line == "" {
		t.Fatalf("tail printed nothing within a second of a patch; stderr:\n%s", stderr.String())
	}
	var e got
	if err := json.Unmarshal([]byte(line), &e); err != nil || e.change() != "modified" || e.Data.ChangedPaths[0] != "/data/k" {
		t.Errorf("tail -o json printed %s (%v)", line, err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
}

func TestRunDrainsOnSIGTERM(t *testing.T) {
	bin := kubefeedBinary(t)
	ns := namespace(t, "runcmd", nil)
	// A slow webhook (80 ms a request, one worker) keeps a backlog queued
	// when SIGTERM arrives: the drain must still deliver all of it.
	var mu sync.Mutex
	var ids []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e got
		_ = decodeBody(r, &e)
		time.Sleep(80 * time.Millisecond)
		mu.Lock()
		ids = append(ids, e.ID)
		mu.Unlock()
	}))
	defer hook.Close()
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), ids...)
	}
	cfg := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: dev\nworkers: 1\nwatch:\n  - resource: configmaps\n    namespaces: [runcmd]\nsinks:\n  - name: hook\n    webhook: {url: '"+hook.URL+"'}\nmetrics: {address: '127.0.0.1:0'}\n")
	cmd := exec.Command(bin, "run", "--config", cfg, "--kubeconfig", cp.Kubeconfig(), "--log-format", "console")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "caches synced") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("not synced; stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cs, _ := clients(t)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		c := cmTyped("r" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Events flow; the watch has seen the last create well before the slow
	// sink could deliver 50 (4 s). Stop now.
	for len(received()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	atSignal := len(received())
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after SIGTERM: %v\n%s", err, stderr.String())
	}
	got := received()
	if atSignal >= 50 {
		t.Fatalf("all 50 were delivered before SIGTERM: the drain was not exercised")
	}
	seen := map[string]bool{}
	for _, id := range got {
		seen[id] = true
	}
	if len(seen) != 50 {
		t.Errorf("webhook got %d distinct events after the drain (%d at SIGTERM), want 50", len(seen), atSignal)
	}
	t.Logf("%d delivered at SIGTERM, %d after the drain", atSignal, len(seen))
}
