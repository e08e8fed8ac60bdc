// Command gendb builds a Go vulnerability database in the v1 layout that
// `govulncheck -db file://DIR` reads (index/db.json, index/modules.json,
// index/vulns.json, ID/<id>.json) from the OSV entries that the
// golang.org/x/vulndb module ships under data/osv. It needs no network and no
// git history: x/vulndb's own cmd/gendb reads the timestamps from the git
// history of a clone, so this one stamps entries that carry no modification
// time with -modified, the time of the vulndb snapshot.
//
//	gendb -osv $(go mod download -json golang.org/x/vulndb@V | jq -r .Dir)/data/osv -out DIR -modified 2026-11-05T23:49:57Z
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

func main() {
	osvDir := flag.String("osv", "", "directory of OSV entries, <ID>.json each (golang.org/x/vulndb's data/osv)")
	out := flag.String("out", "", "directory to write the database to; must not exist")
	modified := flag.String("modified", "", "RFC 3339 time for entries without a modification time (the snapshot's time)")
	flag.Parse()
	if *osvDir == "" || *out == "" || *modified == "" {
		fmt.Fprintln(os.Stderr, "gendb: -osv, -out and -modified are required")
		os.Exit(2)
	}
	snapshot, err := time.Parse(time.RFC3339, *modified)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendb: -modified: %v\n", err)
		os.Exit(2)
	}
	n, err := build(*osvDir, *out, snapshot.UTC())
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendb: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gendb: %d entries written to %s\n", n, *out)
}

// entry holds the OSV fields the indexes need; the entry itself is written
// with all its fields.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	} `json:"events"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// build writes the database and returns the number of entries.
func build(osvDir, out string, snapshot time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries (*.json) in %s", osvDir)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s exists; the database is written to a new directory", out)
	}
	for _, d := range []string{"index", "ID"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return 0, err
		}
	}
	var db struct {
		Modified time.Time `json:"modified"`
	}
	modules := map[string]*moduleMeta{}
	var vulns []vulnMeta
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if filepath.Base(f) != e.ID+".json" {
			return 0, fmt.Errorf("%s: holds entry %q; want the file named <id>.json", f, e.ID)
		}
		if e.Modified.IsZero() {
			e.Modified = snapshot
			if raw, err = setModified(raw, snapshot); err != nil {
				return 0, fmt.Errorf("%s: %w", f, err)
			}
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return 0, err
		}
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: nonSupersededFix(a.Ranges)})
		}
	}
	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	sort.Slice(vulns, func(i, j int) bool { return vulns[i].ID < vulns[j].ID })
	for name, v := range map[string]any{"db.json": db, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(files), nil
}

// setModified rewrites the entry's "modified" field, keeping every other
// field as it is.
func setModified(raw []byte, t time.Time) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	m["modified"] = b
	return json.Marshal(m)
}

// nonSupersededFix is the latest version that fixes the vulnerability, or ""
// when it was introduced again after that fix (as govulncheck's index reads
// it: x/vuln internal/semver.NonSupersededFix).
func nonSupersededFix(ranges []osvRange) string {
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && less(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && less(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// less compares OSV versions, which carry no "v" (or a "go") prefix.
func less(a, b string) bool {
	canon := func(s string) string {
		return "v" + strings.TrimPrefix(strings.TrimPrefix(s, "v"), "go")
	}
	return semver.Compare(canon(a), canon(b)) < 0
}
