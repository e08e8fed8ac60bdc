package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// daemon is a `kubefeed run` process.
type daemon struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func startDaemon(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	return startDaemonWait(t, cfgPath, "caches synced")
}

// startDaemonWait starts `kubefeed run` and waits for a log line.
func startDaemonWait(t *testing.T, cfgPath, until string) *daemon {
	t.Helper()
	cmd := exec.Command(kubefeedBinary(t), "run", "--config", cfgPath, "--kubeconfig", cp.Kubeconfig(), "--log-format", "console")
	logs := &bytes.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logs: logs}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), until) {
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed never logged %q:\n%s", until, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

func (d *daemon) kill() { _ = d.cmd.Process.Signal(syscall.SIGKILL); _ = d.cmd.Wait() }
func (d *daemon) term(t *testing.T) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	return d.cmd.Wait()
}

// checkpointConfig sends the burst resources of ns to the file sink "file"
// (dir/events.jsonl), and to more sinks if given, with a checkpoint file.
func checkpointConfig(dir, ns, moreSinks string) string {
	return "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\n" + burstWatch(ns) + fmt.Sprintf(`sinks:
  - name: file
    file: {path: %[1]s/events.jsonl}
%[2]scheckpoint:
  file: {path: %[1]s/checkpoint.db}
`, dir, moreSinks)
}

func TestRestartDeliversWhatWasMissedAndNothingElse(t *testing.T) {
	ensureWidgetCRD(t)
	ns := namespace(t, "restart", nil)
	dir := t.TempDir()
	// A JetStream sink next to the file sink, for `kubefeed verify`.
	srv := natstest.StartT(t, natstest.Options{})
	cfg := writeFile(t, "c.yaml", checkpointConfig(dir, ns,
		fmt.Sprintf("  - {name: js, jetstream: {servers: [%s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}}\n", srv.URL())))
	events := filepath.Join(dir, "events.jsonl")
	read := func() [][]byte { return readLines(t, events) }

	// Kill kubefeed with SIGKILL in the middle of a burst; the burst goes on
	// while it is down; start it again.
	d := startDaemon(t, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		randomBurst(t, 1, 1500, []string{ns}, []schema.GroupVersionResource{configMaps, widgets})
	}()
	time.Sleep(500 * time.Millisecond)
	d.kill()
	<-done
	before := len(read())
	d = startDaemon(t, cfg)
	defer func() {
		if t.Failed() {
			t.Logf("kubefeed log after the restart:\n%s", d.logs.String())
		}
	}()
	c := rebuildsListed(t, read, ns)
	if len(c.gaps) == 0 || c.gaps[0] != "restart" {
		t.Errorf("gap markers %v, want a restart gap before the recovered events", c.gaps)
	}
	if c.recovered == 0 {
		t.Errorf("no event marked recovered after the restart")
	}
	// The first event after the restart is the gap marker.
	lines := read()
	if before < len(lines) && !strings.Contains(string(lines[before]), `"type":"io.kubefeed.gap"`) {
		t.Errorf("first event after restart: %s", lines[before][:min(200, len(lines[before]))])
	}
	t.Logf("%d events before the kill, %d after; %d recovered, gaps %v, %d duplicates", before, len(lines)-before, c.recovered, c.gaps, c.dups)

	// A clean stop and a restart with no change in between emit nothing.
	if err := d.term(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	n := len(read())
	d = startDaemon(t, cfg)
	time.Sleep(2 * time.Second)
	if got := len(read()); got != n {
		t.Errorf("restart without changes emitted %d events:\n%s", got-n, bytes.Join(read()[n:], []byte("\n")))
	}
	// And it still sees what changes now.
	_, dyn := clients(t)
	if _, err := dyn.Resource(configMaps).Namespace(ns).Create(context.Background(), cm("after", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rebuildsListed(t, read, ns)
	// The JetStream sink caught up too, and verify agrees with its stream.
	rebuildsListed(t, func() [][]byte { return streamLines(t, srv.URL()) }, ns)
	verifyMatches(t, cp.Kubeconfig(), cfg, "js", len(listed(t, []string{ns}, burstResources)))
	d.kill()
}

func TestCorruptCheckpointFallsBackWithGapMarkers(t *testing.T) {
	ns := namespace(t, "corrupt", nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "checkpoint.db"), bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "c.yaml", strings.Replace(checkpointConfig(dir, ns, ""), "  - {resource: widgets.example.com, namespaces: [corrupt]}\n", "", 1))
	d := startDaemon(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for len(readLines(t, filepath.Join(dir, "events.jsonl"))) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	lines := readLines(t, filepath.Join(dir, "events.jsonl"))
	if len(lines) != 1 || !strings.Contains(string(lines[0]), `"reason":"checkpoint-lost"`) {
		t.Errorf("events after a corrupt checkpoint: %s", bytes.Join(lines, []byte("\n")))
	}
	if !strings.Contains(d.logs.String(), "checkpoint unreadable") {
		t.Errorf("no clear log line:\n%s", d.logs.String())
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "checkpoint.db.corrupt-*"))
	if len(aside) != 1 {
		t.Errorf("corrupt file not moved aside: %v", aside)
	}
	d.kill()
}
