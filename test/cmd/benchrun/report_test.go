package main

import (
	"fmt"
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
		for _, h := range []string{"## Burst", "## Steady", "## Memory", "## Kafka", "## OTLP", "## Through a network", "## Deletecollection of 10,000", "## Failover", "## Sharding", "## Targets", "## Kubernetes Events", "### burst", "## In-process"} {
			if !strings.Contains(string(md), "\n"+h) {
				t.Errorf("no %q section", h)
			}
		}
	}
}

// The attribution target reads both sub-benchmarks' CPU per change from
// the in-process benchmarks' output, and is met at 1.15× at most.
func TestAttributionTargetFromTheGoBenchmarks(t *testing.T) {
	pair := func(off, on int) string {
		return fmt.Sprintf("BenchmarkAttribution/off-2 \t 3000\t 36000 ns/op\t %d cpu-ns/change\t 1.000 events/change\n", off) +
			fmt.Sprintf("BenchmarkAttribution/on-2  \t 3000\t 41000 ns/op\t %d cpu-ns/change\t 1.000 events/change\n", on)
	}
	// The median round counts, not the first: 1.10, 1.30, 1.05 → 1.10.
	met := pair(40000, 44000) + pair(40000, 52000) + pair(40000, 42000)
	missed := pair(40000, 44000) + pair(40000, 52000) + pair(40000, 50000)
	for _, tc := range []struct {
		out, met string
	}{{met, "yes"}, {missed, "**no**"}} {
		var found bool
		for _, tg := range targets(report{GoBench: tc.out}) {
			if strings.HasPrefix(tg.Name, "`attribution: managers`") {
				found = true
				if tg.Met != tc.met || !strings.Contains(tg.Got, "CPU ns per change") {
					t.Errorf("attribution row %+v, want met %s", tg, tc.met)
				}
			}
		}
		if !found {
			t.Error("no attribution row")
		}
	}
}
