package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/test/cluster"
)

// No container engine runs here: the Dockerfile is checked for what matters
// (static build, distroless non-root final stage, no shell needed), and its
// exact go build command is run, and the binary inspected.
func TestDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	root := cluster.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	// Join continuation lines, as the Dockerfile parser does.
	df = regexp.MustCompile(`\\\n\s*`).ReplaceAllString(df, "")
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", stages)
	}
	final := stages[len(stages)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.HasSuffix(final, ":nonroot") {
		t.Errorf("final stage %s, want distroless static nonroot", final)
	}
	last := df[strings.LastIndex(df, "FROM "):]
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).MatchString(last) {
		t.Error("final stage does not run as uid 65532")
	}
	if regexp.MustCompile(`(?m)^(RUN|SHELL)`).MatchString(last) {
		t.Error("final stage runs commands: it must need no shell")
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/kubefeed"\]$`).MatchString(last) {
		t.Error("ENTRYPOINT is not the exec form of /usr/local/bin/kubefeed")
	}
	run := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 GOOS=linux go build .*)$`).FindStringSubmatch(df)
	if run == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 GOOS=linux go build` line")
	}
	// Run that exact command with the ARGs filled in.
	out := filepath.Join(t.TempDir(), "kubefeed")
	line := strings.NewReplacer("${VERSION}", "v9.9.9-test", "${COMMIT}", "abc1234", "/out/kubefeed", out).Replace(run[1])
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader: not static")
		}
	}
	v, err := exec.Command(out, "version").Output()
	if err != nil || !strings.Contains(string(v), "kubefeed v9.9.9-test") || !strings.Contains(string(v), "commit: abc1234") {
		t.Errorf("version stamping: %s %v", v, err)
	}
}
