// Package golden compares what a test renders with a file under the
// test's testdata/, and rewrites the file when the test runs with -update.
// It is for tests only.
package golden

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the code renders now")

// File collects what a test's cases render, for testdata/<name>.golden.
// Cases come in sections (one per resource, say). The file shows some
// cases of each section in full (every every-th, up to shown of them),
// then every case of the section (those too) in blocks of block cases,
// each as the SHA-256 of their renderings: a sweep of thousands of seeded
// random cases stays a small file, yet a change to any byte any case
// renders changes its block's line. After a change that means to render
// something else, rewrite the file with -update and read the diff.
type File struct {
	shown, every, block int
	out                 strings.Builder
	section             string
	n                   int // cases of the section so far
	digests             []string
	h                   hash.Hash
}

func New(header string, shown, every, block int) *File {
	g := &File{shown: shown, every: every, block: block}
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		g.out.WriteString("# " + l + "\n")
	}
	return g
}

// startSection ends the section before (if any) and starts one.
func (g *File) StartSection(name string) {
	g.EndSection()
	g.section = name
	g.out.WriteString("\n== " + name + "\n")
}

func (g *File) EndSection() {
	if g.n%g.block != 0 {
		g.Sum()
	}
	for _, d := range g.digests {
		g.out.WriteString(d)
	}
	g.n, g.digests, g.h = 0, nil, nil
}

func (g *File) Sum() {
	first := g.n - 1 - (g.n-1)%g.block
	g.digests = append(g.digests, fmt.Sprintf("sha256 %s cases %d-%d %x\n", g.section, first, g.n-1, g.h.Sum(nil)))
}

// add records one case's rendering (its lines, each ending with "\n").
func (g *File) Add(rendering string) {
	if g.n%g.every == 0 && g.n/g.every < g.shown {
		g.out.WriteString(rendering)
	}
	if g.n%g.block == 0 {
		g.h = sha256.New()
	}
	g.h.Write([]byte(rendering))
	g.n++
	if g.n%g.block == 0 {
		g.Sum()
	}
}

// Check compares what was recorded with testdata/<name>.golden, or
// writes it there with -update.
func (g *File) Check(t *testing.T, name string) {
	t.Helper()
	g.EndSection()
	got := g.out.String()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	want := string(b)
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var gotLine, wantLine string
		if i < len(gl) {
			gotLine = gl[i]
		}
		if i < len(wl) {
			wantLine = wl[i]
		}
		if gotLine != wantLine {
			t.Fatalf("%s differs from what the code renders now, first at line %d:\n got %s\nwant %s", path, i+1, gotLine, wantLine)
		}
	}
}
