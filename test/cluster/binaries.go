package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// RepoRoot is the root of the kubefeed checkout this package was built from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the directory holding etcd, kube-apiserver and helm. It uses
// $KUBEFEED_BIN_DIR when set, and otherwise runs test/tools/build.sh, which
// builds what is missing (minutes, once per machine) and is a no-op otherwise.
func BinDir() (string, error) {
	binOnce.Do(func() {
		if d := os.Getenv("KUBEFEED_BIN_DIR"); d != "" {
			binDir = d
			return
		}
		var out, errOut bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "test", "tools", "build.sh"))
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("build control plane: %w: %s", err, tail(errOut.String(), 2000))
			return
		}
		binDir = strings.TrimSpace(out.String())
	})
	return binDir, binErr
}

// Binary returns the path of one of the built tools.
func Binary(name string) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("control plane binary %s: %w (run test/tools/build.sh)", name, err)
	}
	return p, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
