// Command vulngate runs govulncheck (source mode, symbol level) and fails
// when the code can reach a vulnerability that is not accepted.
//
//	vulngate -govulncheck BIN -db DIR [-accept FILE] [patterns...]
//
// It exits 0 when every reachable vulnerability is accepted, 3 when one is
// not (as govulncheck does), and 1 when the check could not run. Vulnerable
// modules or packages that are required or imported but whose vulnerable
// symbols are not reachable do not fail the check.
//
// The accept file lists one accepted finding a line, "ID MODULE REASON…",
// for example
//
//	GO-2026-6617 stdlib fixed in go1.26.9; this machine has go1.26.8, the image builds with golang:1.26
//
// A finding is accepted only for that module; '#' starts a comment. Entries
// that no longer match a reachable finding are reported, so the list can be
// emptied when the toolchain or the dependency is bumped.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func main() {
	bin := flag.String("govulncheck", "govulncheck", "the govulncheck binary")
	db := flag.String("db", "", "directory of the vulnerability database (v1 layout)")
	accept := flag.String("accept", "", "file of accepted findings: ID MODULE REASON per line")
	timeout := flag.Duration("timeout", 20*time.Minute, "bound on the govulncheck run")
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	if *db == "" {
		fmt.Fprintln(os.Stderr, "vulngate: -db is required")
		os.Exit(1)
	}
	accepted, err := readAccepted(*accept)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulngate: %v\n", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	findings, err := run(ctx, *bin, *db, patterns)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulngate: %v\n", err)
		os.Exit(1)
	}
	os.Exit(report(os.Stdout, findings, accepted))
}

// finding is one reachable vulnerability: its id, the module holding the
// vulnerable symbol, and where the code reaches it.
type finding struct {
	id, summary, module, version, fixed, symbol, from string
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

type message struct {
	Config *struct {
		DB string `json:"db"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV   string   `json:"osv"`
		Fixed string   `json:"fixed_version"`
		Trace []*frame `json:"trace"`
	} `json:"finding"`
}

// run runs govulncheck -format json and returns the symbol-level findings,
// one per vulnerability and module.
func run(ctx context.Context, bin, db string, patterns []string) ([]finding, error) {
	args := append([]string{"-db", "file://" + db, "-format", "json"}, patterns...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	summaries := map[string]string{}
	seen := map[string]bool{}
	var out []finding
	configured := false
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("govulncheck output: %w", err)
		}
		switch {
		case m.Config != nil:
			configured = true
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0 && m.Finding.Trace[0].Function != "":
			f, tr := m.Finding, m.Finding.Trace
			key := f.OSV + " " + tr[0].Module
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, finding{id: f.OSV, module: tr[0].Module, version: tr[0].Version, fixed: f.Fixed,
				symbol: symbol(tr[0]), from: entry(tr)})
		}
	}
	if !configured {
		return nil, fmt.Errorf("govulncheck printed no configuration; is %s govulncheck?\n%s", bin, stderr.String())
	}
	for i := range out {
		out[i].summary = summaries[out[i].id]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id+out[i].module < out[j].id+out[j].module })
	return out, nil
}

func symbol(f *frame) string {
	if f.Receiver != "" {
		return f.Package + "." + strings.TrimPrefix(f.Receiver, "*") + "." + f.Function
	}
	return f.Package + "." + f.Function
}

// entry is the outermost frame of the trace: where kubefeed's code starts it.
func entry(tr []*frame) string {
	f := tr[len(tr)-1]
	if f.Position != nil && f.Position.Line > 0 {
		return fmt.Sprintf("%s:%d (%s)", f.Position.Filename, f.Position.Line, symbol(f))
	}
	return symbol(f)
}

// readAccepted reads the accept file: "ID MODULE REASON…" a line.
func readAccepted(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) < 3 || !strings.HasPrefix(fields[0], "GO-"):
			return nil, fmt.Errorf("%s:%d: want \"GO-YYYY-NNNN MODULE REASON…\", got %q", path, n, sc.Text())
		}
		out[fields[0]+" "+fields[1]] = strings.Join(fields[2:], " ")
	}
	return out, sc.Err()
}

// report prints the findings and returns the exit code.
func report(w io.Writer, findings []finding, accepted map[string]string) int {
	failed := 0
	used := map[string]bool{}
	for _, f := range findings {
		key := f.id + " " + f.module
		verdict := "REACHABLE"
		if reason, ok := accepted[key]; ok {
			verdict, used[key] = "accepted ("+reason+")", true
		} else {
			failed++
		}
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		fmt.Fprintf(w, "%s %s: %s\n    %s@%s, fixed in %s; %s reached from %s\n", verdict, f.id, f.summary, f.module, f.version, fixed, f.symbol, f.from)
	}
	var stale []string
	for key := range accepted {
		if !used[key] {
			stale = append(stale, key)
		}
	}
	sort.Strings(stale)
	for _, key := range stale {
		fmt.Fprintf(w, "accepted but no longer reachable (remove it from the accept file): %s\n", key)
	}
	if failed > 0 {
		fmt.Fprintf(w, "vulngate: %d reachable vulnerabilities are not accepted\n", failed)
		return 3
	}
	fmt.Fprintf(w, "vulngate: no reachable vulnerability outside the accepted ones (%d findings, %d accepted)\n", len(findings), len(used))
	return 0
}
