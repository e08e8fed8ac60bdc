package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/checkpoint"
)

// TestRunRefusesALockedCheckpoint: a second kubefeed on the same
// checkpoint file exits 2, says so, and leaves the file alone.
func TestRunRefusesALockedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "checkpoint.db")
	holder, err := checkpoint.OpenFile(db, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	kubeconfig := filepath.Join(dir, "kubeconfig")
	// Never contacted: the checkpoint is opened before anything is listed.
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	cfg := filepath.Join(dir, "c.yaml")
	conf := `apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - resource: configmaps
sinks:
  - name: out
    file: {path: ` + dir + `/events.jsonl}
checkpoint:
  file: {path: ` + db + `}
`
	for p, c := range map[string]string{kubeconfig: kc, cfg: conf} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	code := Main([]string{"run", "--config", cfg, "--kubeconfig", kubeconfig, "--log-level", "error"}, &stdout, &stderr)
	if code != exitRuntime {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitRuntime, stderr.String())
	}
	if want := "checkpoint file " + db + " is locked by another process"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
	}
	if aside, _ := filepath.Glob(db + ".corrupt-*"); len(aside) != 0 {
		t.Errorf("the locked file was moved aside: %v", aside)
	}
}
