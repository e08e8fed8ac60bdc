package vulncheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	toolsOnce sync.Once
	toolsDir  string
	toolsErr  error
)

// tools builds (once per machine, cached) govulncheck and the database and
// returns their directory.
func tools(t *testing.T) string {
	t.Helper()
	toolsOnce.Do(func() {
		var out, errOut bytes.Buffer
		cmd := exec.Command("bash", filepath.Join("..", "vulncheck.sh"))
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			toolsErr = errors.New("test/tools/vulncheck.sh: " + err.Error() + "\n" + errOut.String())
			return
		}
		toolsDir = strings.TrimSpace(out.String())
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return toolsDir
}

// govulncheck runs the check as `make vulncheck` does, in dir, and returns
// its exit code and output.
func govulncheck(t *testing.T, dir string) (int, string) {
	t.Helper()
	d := tools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d, "govulncheck"), "-db", "file://"+filepath.Join(d, "db"), "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("govulncheck in %s: %v\n%s", dir, err, out)
	return 0, ""
}

// The check fails (exit 3) on a vulnerable symbol the code calls, and names
// the vulnerability.
func TestReachableVulnerabilityFails(t *testing.T) {
	code, out := govulncheck(t, filepath.Join("testdata", "reachable"))
	if code != 3 || !strings.Contains(out, "GO-2022-1059") || !strings.Contains(out, "language.ParseAcceptLanguage") {
		t.Fatalf("govulncheck on a call of x/text v0.3.7 language.ParseAcceptLanguage: exit %d, want 3 naming GO-2022-1059:\n%s", code, out)
	}
}

// A vulnerable module version whose vulnerable symbols are not reachable
// passes: the check is symbol-level.
func TestImportedButUncalledVulnerabilityPasses(t *testing.T) {
	if code, out := govulncheck(t, filepath.Join("testdata", "unreachable")); code != 0 {
		t.Fatalf("govulncheck on x/text v0.3.7 without a vulnerable call: exit %d, want 0:\n%s", code, out)
	}
}

// The generated database has the v1 layout and the index govulncheck uses to
// skip fixed versions.
func TestDatabaseLayout(t *testing.T) {
	db := filepath.Join(tools(t), "db")
	var meta struct {
		Modified time.Time `json:"modified"`
	}
	readJSON(t, filepath.Join(db, "index", "db.json"), &meta)
	if meta.Modified.IsZero() {
		t.Error("index/db.json: no modification time")
	}
	var modules []struct {
		Path  string `json:"path"`
		Vulns []struct {
			ID       string    `json:"id"`
			Modified time.Time `json:"modified"`
			Fixed    string    `json:"fixed"`
		} `json:"vulns"`
	}
	readJSON(t, filepath.Join(db, "index", "modules.json"), &modules)
	found := map[string]string{}
	for _, m := range modules {
		for _, v := range m.Vulns {
			if v.Modified.IsZero() {
				t.Errorf("index/modules.json: %s %s has no modification time", m.Path, v.ID)
			}
			found[m.Path+" "+v.ID] = v.Fixed
		}
	}
	if got, ok := found["golang.org/x/text GO-2022-1059"]; !ok || got != "0.3.8" {
		t.Errorf("index/modules.json: golang.org/x/text GO-2022-1059 fixed %q (listed %v), want 0.3.8", got, ok)
	}
	if len(modules) < 1000 || !strings.Contains(strings.Join(keys(found), "\n"), "stdlib ") {
		t.Errorf("index/modules.json: %d modules; want the whole database, stdlib included", len(modules))
	}
	var entry struct {
		ID       string `json:"id"`
		Affected []any  `json:"affected"`
	}
	readJSON(t, filepath.Join(db, "ID", "GO-2022-1059.json"), &entry)
	if entry.ID != "GO-2022-1059" || len(entry.Affected) == 0 {
		t.Errorf("ID/GO-2022-1059.json: %+v", entry)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
