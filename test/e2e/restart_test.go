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
	logs *syncBuffer // written by the process while the test reads it
}

func startDaemon(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	return startDaemonWait(t, cfgPath, "caches synced")
}

// startDaemonWait starts `kubefeed run` and waits for a log line.
func startDaemonWait(t *testing.T, cfgPath, until string) *daemon {
	t.Helper()
	cmd := exec.Command(kubefeedBinary(t), "run", "--config", cfgPath, "--kubeconfig", cp.Kubeconfig(), "--log-format", "console")
	logs := &syncBuffer{}
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

// A deletecollection of 300 ConfigMaps, kubefeed SIGKILLed while the
// deletions are being delivered (some acknowledged but not yet in the
// checkpoint), then restarted: every object's deletion carries one id,
// and a deletion sent again is byte for byte the first (the deletion's
// version, final state, time and recovered mark). Each event id carries
// one time, on the file sink and on the JetStream stream alike.
func TestDeletionsSentAgainAfterKillKeepTheirIDAndTime(t *testing.T) {
	for _, store := range []string{"file", "jetstream"} {
		t.Run(store, func(t *testing.T) {
			ns := namespace(t, "delkill-"+store, nil)
			dir := t.TempDir()
			srv := natstest.StartT(t, natstest.Options{})
			ckpt := fmt.Sprintf("checkpoint:\n  file: {path: %s/checkpoint.db}\n", dir)
			if store == "jetstream" {
				ckpt = fmt.Sprintf("checkpoint:\n  jetstream: {servers: [%s], bucket: kf-ckpt}\n", srv.URL())
			}
			cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
sinks:
  - name: file
    file: {path: %[2]s/events.jsonl}
  - {name: js, jetstream: {servers: [%[3]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}}
%[4]s`, ns, dir, srv.URL(), ckpt))
			events := filepath.Join(dir, "events.jsonl")
			const n = 300
			kube, _ := clients(t)
			ctx := context.Background()
			d := startDaemon(t, cfg)
			for i := 0; i < n; i++ {
				if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cmTyped(fmt.Sprintf("cm-%03d", i)), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			countType := func(lines [][]byte, typ string) int {
				c := 0
				for _, l := range lines {
					if bytes.Contains(l, []byte(`"type":"io.kubefeed.resource.`+typ+`"`)) {
						c++
					}
				}
				return c
			}
			waitLines(t, "the added events", func() bool { return countType(readLines(t, events), "added") >= n })
			time.Sleep(1500 * time.Millisecond) // every delivered state in the checkpoint

			if err := kube.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
			// SIGKILL while the deletions are on their way: some delivered,
			// not all.
			waitLines(t, "the first deletions", func() bool { return countType(readLines(t, events), "deleted") > 0 })
			d.kill()
			deletedBefore := countType(readLines(t, events), "deleted")
			d = startDaemon(t, cfg)
			defer func() {
				if t.Failed() {
					t.Logf("kubefeed log after the restart:\n%s", d.logs.String())
				}
			}()
			waitLines(t, "a deletion of every object", func() bool { return deletedUIDs(t, readLines(t, events)) >= n })
			time.Sleep(time.Second) // anything sent twice has arrived
			d.kill()
			t.Logf("%s checkpoint: %d deletions before the kill, %d events in the file", store, deletedBefore, len(readLines(t, events)))

			fileEvents := readLines(t, events)
			checkOneEventPerID(t, "file", fileEvents)
			checkOneEventPerID(t, "js", streamLines(t, srv.URL()))
			// One id, one time, whichever sink carried it.
			times := map[string]string{}
			for _, l := range fileEvents {
				var e struct{ ID, Time string }
				if err := json.Unmarshal(l, &e); err != nil {
					t.Fatal(err)
				}
				times[e.ID] = e.Time
			}
			for _, l := range streamLines(t, srv.URL()) {
				var e struct{ ID, Time string }
				if err := json.Unmarshal(l, &e); err != nil {
					t.Fatal(err)
				}
				if ft, ok := times[e.ID]; ok && ft != e.Time {
					t.Errorf("%s: time %s in the file, %s in the stream", e.ID, ft, e.Time)
				}
			}
		})
	}
}

// checkOneEventPerID fails for an object deleted under more than one id,
// and for an id whose copies differ in any byte.
func checkOneEventPerID(t *testing.T, sink string, lines [][]byte) {
	t.Helper()
	byID := map[string][]byte{}
	deletions := map[string]map[string]bool{} // uid -> deletion ids
	for _, l := range lines {
		var e struct{ ID, Type, UID string }
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if first, ok := byID[e.ID]; ok && !bytes.Equal(first, l) {
			t.Errorf("%s: %s sent twice with other bytes:\nfirst: %s\nagain: %s", sink, e.ID, first, l)
		}
		byID[e.ID] = l
		if e.Type == "io.kubefeed.resource.deleted" {
			if deletions[e.UID] == nil {
				deletions[e.UID] = map[string]bool{}
			}
			deletions[e.UID][e.ID] = true
		}
	}
	for uid, ids := range deletions {
		if len(ids) > 1 {
			t.Errorf("%s: uid %s deleted under %d ids: %v", sink, uid, len(ids), sortedKeys(ids))
		}
	}
}

// deletedUIDs counts the uids with a deleted event.
func deletedUIDs(t *testing.T, lines [][]byte) int {
	uids := map[string]bool{}
	for _, l := range lines {
		var e struct{ Type, UID string }
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == "io.kubefeed.resource.deleted" {
			uids[e.UID] = true
		}
	}
	return len(uids)
}

// waitLines polls cond every few milliseconds (a liveness bound of a
// minute, not a timing assertion).
func waitLines(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(3 * time.Millisecond)
	}
}
