package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fileCheckpointConfig is a config with a file sink and a file checkpoint
// in dir, and the given watch rules.
func fileCheckpointConfig(dir, rules string) string {
	return "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nshutdownTimeout: 10s\nwatch:\n" + rules + fmt.Sprintf(`sinks:
  - name: file
    file: {path: %[1]s/events.jsonl}
checkpoint:
  file: {path: %[1]s/checkpoint.db}
`, dir)
}

// fileEvents decodes the events a file sink wrote so far (none when the
// file does not exist yet).
func fileEvents(t *testing.T, path string) []got {
	t.Helper()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var out []got
	for _, l := range readLines(t, path) {
		var g got
		if err := jsonUnmarshal(l, &g); err != nil {
			t.Fatalf("bad event line %q: %v", l, err)
		}
		g.raw = l
		out = append(out, g)
	}
	return out
}

// waitFileEvents waits until ok holds for the events in path.
func waitFileEvents(t *testing.T, path, what string, ok func([]got) bool) []got {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		evs := fileEvents(t, path)
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 90s for %s; events:\n%s", what, summary(evs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// has reports whether evs hold an event of change for name.
func has(evs []got, change, name string) bool {
	for _, e := range evs {
		if e.change() == change && e.Name == name {
			return true
		}
	}
	return false
}

// A second kubefeed started on a checkpoint file the first one holds
// exits 2 naming the lock; it neither moves the file aside nor sends
// checkpoint-lost gap markers, and the first one keeps delivering.
func TestCheckpointFileLockedByAnotherKubefeed(t *testing.T) {
	ns := namespace(t, "cplock", nil)
	dir := t.TempDir()
	cfg := writeFile(t, "c.yaml", fileCheckpointConfig(dir, "  - {resource: configmaps, namespaces: [cplock]}\n"))
	events := filepath.Join(dir, "events.jsonl")
	ctx := context.Background()
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)

	first := startKubefeedReady(t, cfg)
	if _, err := cms.Create(ctx, cm("before", nil, map[string]any{"v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFileEvents(t, events, "added before", func(evs []got) bool { return has(evs, "added", "before") })

	second := startKubefeed(t, cfg)
	code := second.waitExit(2 * time.Minute)
	logs := second.logs.String()
	if code != 2 {
		t.Errorf("second kubefeed on a locked checkpoint: exit code %d, want 2; log:\n%s", code, logs)
	}
	if !strings.Contains(logs, "locked by another process") || !strings.Contains(logs, filepath.Join(dir, "checkpoint.db")) {
		t.Errorf("second kubefeed's log does not name the lock and the file:\n%s", logs)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "checkpoint.db.*")); len(aside) != 0 {
		t.Errorf("checkpoint moved aside although it was only locked: %v", aside)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint.db")); err != nil {
		t.Errorf("checkpoint file: %v", err)
	}

	// The first one still delivers, and nobody sent a gap marker.
	if _, err := cms.Create(ctx, cm("after", nil, map[string]any{"v": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := waitFileEvents(t, events, "added after", func(evs []got) bool { return has(evs, "added", "after") })
	for _, e := range evs {
		if e.Type == "io.kubefeed.gap" {
			t.Errorf("gap marker in the events (a second writer treated the lock as a lost checkpoint): %s", e.raw)
		}
	}
	if first.exited() {
		t.Fatalf("first kubefeed exited: %v", first.waitErr)
	}
	if code := first.term(time.Minute); code != 0 {
		t.Errorf("first kubefeed: exit code %d after SIGTERM, want 0", code)
	}
}
