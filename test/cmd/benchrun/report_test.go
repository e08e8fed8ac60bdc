package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The report renders from the committed benchmarks.json with every
// section, and from an empty one without failing.
func TestRenderReport(t *testing.T) {
	rep, err := readReport(filepath.Join("..", "..", "..", "docs", "benchmarks.json"), false)
	if err != nil {
		t.Fatal(err)
	}
	for name, rep := range map[string]report{"docs": rep, "empty": {}} {
		out := t.TempDir()
		if err := writeReport(rep, out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		md, err := os.ReadFile(filepath.Join(out, "benchmarks.md"))
		if err != nil {
			t.Fatal(err)
		}
		svg, err := os.ReadFile(filepath.Join(out, "benchmarks.svg"))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(md) + string(svg); strings.Contains(s, "<no value>") {
			t.Errorf("%s: a template reads a field the view lacks", name)
		}
		if !strings.HasSuffix(string(svg), "</svg>\n") {
			t.Errorf("%s: benchmarks.svg is cut short", name)
		}
		if name != "docs" {
			continue
		}
		for _, h := range []string{"## Burst", "## Steady", "## Memory", "## Kafka", "## Through a network", "## Deletecollection of 10,000", "## Failover", "## Sharding", "## Targets", "## Kubernetes Events", "### burst", "## In-process"} {
			if !strings.Contains(string(md), "\n"+h) {
				t.Errorf("no %q section", h)
			}
		}
	}
}
