package vulncheck

import (
	"context"
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
	gateOnce sync.Once
	gateBin  string
	gateErr  error
)

// vulngate runs test/cmd/vulngate (what `make vulncheck` runs) in dir with
// the given accept file contents and returns its exit code and output.
func vulngate(t *testing.T, dir, accept string) (int, string) {
	t.Helper()
	gateOnce.Do(func() {
		tmp, err := os.MkdirTemp("", "vulngate-")
		if err != nil {
			gateErr = err
			return
		}
		gateBin = filepath.Join(tmp, "vulngate")
		out, err := exec.Command("go", "build", "-o", gateBin, "../../cmd/vulngate").CombinedOutput()
		if err != nil {
			gateErr = errors.New("build vulngate: " + err.Error() + "\n" + string(out))
		}
	})
	if gateErr != nil {
		t.Fatal(gateErr)
	}
	d := tools(t)
	args := []string{"-govulncheck", filepath.Join(d, "govulncheck"), "-db", filepath.Join(d, "db")}
	if accept != "" {
		p := filepath.Join(t.TempDir(), "accepted.txt")
		if err := os.WriteFile(p, []byte(accept), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-accept", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gateBin, args...)
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
	t.Fatalf("vulngate in %s: %v\n%s", dir, err, out)
	return 0, ""
}

func TestGate(t *testing.T) {
	reachable, unreachable := filepath.Join("testdata", "reachable"), filepath.Join("testdata", "unreachable")
	for _, tc := range []struct {
		name, dir, accept string
		code              int
		want              []string
	}{
		{"reachable fails", reachable, "", 3, []string{"REACHABLE GO-2022-1059", "golang.org/x/text@v0.3.7, fixed in v0.3.8", "language.ParseAcceptLanguage reached from main.go:11"}},
		{"accepted passes", reachable, "# why\nGO-2022-1059 golang.org/x/text only parses our own constant headers\n", 0, []string{"accepted (only parses our own constant headers) GO-2022-1059"}},
		{"accepted for another module fails", reachable, "GO-2022-1059 stdlib wrong module\n", 3, []string{"REACHABLE GO-2022-1059", "no longer reachable (remove it from the accept file): GO-2022-1059 stdlib"}},
		{"stale acceptance is reported", unreachable, "GO-2022-1059 golang.org/x/text old reason\n", 0, []string{"no longer reachable (remove it from the accept file): GO-2022-1059 golang.org/x/text"}},
		{"bad accept line", reachable, "GO-2022-1059\n", 1, []string{"accepted.txt:1: want"}},
		{"load error is not a pass", t.TempDir(), "", 1, []string{"govulncheck"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := vulngate(t, tc.dir, tc.accept)
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
