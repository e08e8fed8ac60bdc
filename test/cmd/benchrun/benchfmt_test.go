package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// benchfmtFixture is a small report with every section: two burst runs,
// two Events runs, two deletecollection runs, the rest once (a failover
// per standby mode, three sharding rows).
func benchfmtFixture() report {
	r := func(mode string, rate float64) result {
		return result{Mode: mode, Objects: 100, Rate: rate, CPUPer1k: 0.25, RSSMiB: 60, P99Millis: 12.5}
	}
	rep := report{Date: "2026-12-01T00:00:00Z", Machine: "Test CPU @ 2.0GHz, 2 cores", KubeAPIServer: "v1.37.2",
		Burst: map[string][]result{}, Memory: map[string]result{"bare": {Mode: "bare", Objects: 1000, RSSMiB: 80}, "kubefeed-discard": {Mode: "kubefeed-discard", Objects: 1000, RSSMiB: 70}},
		EventsDate: "2026-12-02T00:00:00Z", Events: map[string][]result{}, EventsN: 100,
		GoBench: "goos: linux\ngoarch: amd64\npkg: github.com/kubefeed/kubefeed/exporter\ncpu: Test CPU @ 2.0GHz\n" +
			"BenchmarkDiffPod-2   \t    3000\t     35617 ns/op\t   12664 B/op\t      55 allocs/op\nPASS\nok  \tgithub.com/kubefeed/kubefeed/exporter\t2.8s\n"}
	for _, m := range burstModes {
		rep.Burst[m] = []result{r(m, 900), r(m, 950)}
	}
	for _, rate := range []float64{250, 500} {
		s, b := r("kubefeed-jetstream", rate), r("bare-latency", rate)
		s.OwnP99Millis, s.CreateP99Millis, b.CreateP99Millis = 5, 7, 8
		rep.Steady, rep.SteadyBare = append(rep.Steady, s), append(rep.SteadyBare, b)
	}
	emit := r("kubefeed-emit", 50000)
	rep.Emit = &emit
	rep.Network = []netRow{{DelayMillis: 1, Objects: 100, JetStreamCeil: result{Mode: "ceiling-jetstream", Objects: 100, Rate: 60000},
		JetStream: r("kubefeed-jetstream-emit", 30000), WebhookCeil: result{Mode: "ceiling-webhook", Objects: 100, Rate: 100000}, Webhook: r("kubefeed-webhook-emit", 33000)}}
	rep.Kafka = &kafkaReport{Date: "2026-12-05T00:00:00Z", Partitions: 4, Kubefeed: r("kubefeed-kafka", 40000), Exporter: r("kubefeed-emit", 50000), JetStream: r("kubefeed-jetstream-emit", 27000), Ceiling: r("kafka-ceiling", 240000), Rounds: 3}
	for _, load := range eventLoads {
		for _, m := range eventModes {
			rep.Events[load.name+"/"+m] = []result{r(m, 300), r(m, 310)}
		}
	}
	rep.Events["memory/events-bare-dynamic"] = []result{{Mode: "events-bare-dynamic", Objects: 1000, RSSMiB: 90}}
	rep.Delete = &deleteReport{Date: "2026-12-03T00:00:00Z", Objects: 100, Rows: map[string][]deleteRow{}}
	for _, m := range deleteModes {
		row := deleteRow{Seconds: 9.5, Rate: 1050, CPUSeconds: 2, CallSeconds: 9.6, AddSeconds: 5}
		if m != "none" {
			row.Flushes, row.CheckpointMiB = 2500, 140
		}
		rep.Delete.Rows[m] = []deleteRow{row, row}
	}
	rep.Failover = &failoverReport{Date: "2026-12-04T00:00:00Z", Objects: 100, LeaseSeconds: 15, TargetSeconds: 17, Rows: []failoverRow{
		{Standby: "cold", Seconds: 19.5, LeaderSeconds: 17, WatchLists: 1, WatchEvents: 101, RSSBeforeMiB: 30, RSSAfterMiB: 60, PeakRSSMiB: 61, CPUSeconds: 1},
		{Standby: "warm", Warm: true, Seconds: 16, LeaderSeconds: 15.9, WatchEvents: 2, RSSBeforeMiB: 60, RSSAfterMiB: 61, PeakRSSMiB: 62, CPUSeconds: 0.1}}}
	rep.Sharding = shardingFixture(4, 4, 4)
	return rep
}

var (
	configLine = regexp.MustCompile(`^[\p{Ll}][^\s\p{Lu}]*:(\s+(.*))?$`)
	unitLine   = regexp.MustCompile(`^Unit (\S+) better=(higher|lower)$`)
	resultLine = regexp.MustCompile(`^Benchmark(\S+)\s+(\d+)((?:\s+\S+\s+\S+)+)\s*$`)
)

// parsedBench is what checkBenchfmt read: how often each of benchrun's
// names appears (its own lines, under its pkg), the date in force at its
// first line, and the configuration before the first result.
type parsedBench struct {
	names        map[string]int
	date, header map[string]string
}

// checkBenchfmt checks text as the Go benchmark format
// (https://go.dev/design/14313-benchmark-format) by hand: configuration
// lines first, then a Unit line per unit of benchrun's own lines saying
// which way is better, then lines `Benchmark<name> <iterations> (<value>
// <unit>)+`.
func checkBenchfmt(t *testing.T, text string) parsedBench {
	t.Helper()
	p := parsedBench{names: map[string]int{}, date: map[string]string{}, header: map[string]string{}}
	units, cfg := map[string]bool{}, map[string]string{}
	seenBench := false
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "Benchmark"):
			if !seenBench {
				for k, v := range cfg {
					p.header[k] = v
				}
				seenBench = true
			}
			m := resultLine.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("line %d is not `Benchmark<name> <iterations> (<value> <unit>)+`: %q", i+1, l)
				continue
			}
			own := cfg["pkg"] == benchrunPkg
			f := strings.Fields(m[3])
			for j := 0; j < len(f); j += 2 {
				if _, err := strconv.ParseFloat(f[j], 64); err != nil {
					t.Errorf("line %d: value %q: %v", i+1, f[j], err)
				}
				if own && !units[f[j+1]] {
					t.Errorf("line %d: unit %q has no Unit line before it", i+1, f[j+1])
				}
			}
			if own {
				if p.names[m[1]] == 0 {
					p.date[m[1]] = cfg["date"]
				}
				p.names[m[1]]++
			}
		case unitLine.MatchString(l):
			m := unitLine.FindStringSubmatch(l)
			if seenBench {
				t.Errorf("line %d: a Unit line after the first result", i+1)
			}
			if want := map[bool]string{true: "higher", false: "lower"}[strings.HasSuffix(m[1], "/s")]; m[2] != want {
				t.Errorf("line %d: %s better=%s, want %s", i+1, m[1], m[2], want)
			}
			units[m[1]] = true
		case configLine.MatchString(l):
			k, v, _ := strings.Cut(l, ":")
			cfg[k] = strings.TrimSpace(v)
		case l == "", l == "PASS", strings.HasPrefix(l, "ok  "), strings.HasPrefix(l, "("):
			// go test's own lines (and blank ones), which readers skip.
		default:
			t.Errorf("line %d is none of a result, a configuration or a Unit line: %q", i+1, l)
		}
	}
	return p
}

// benchmarks.txt is the Go benchmark format, with one line per run of
// every section's cases, and -benchfmt prints what writeReport writes.
func TestBenchfmt(t *testing.T) {
	rep := benchfmtFixture()
	out := t.TempDir()
	if err := writeReport(rep, out); err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(filepath.Join(out, "benchmarks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeBenchfmt(&b, rep); err != nil {
		t.Fatal(err)
	}
	if b.String() != string(txt) {
		t.Error("-benchfmt prints other text than benchmarks.txt")
	}
	p := checkBenchfmt(t, string(txt))
	names := p.names
	for k, v := range map[string]string{"goos": "linux", "goarch": "amd64", "pkg": benchrunPkg, "cpu": "Test CPU @ 2.0GHz", "cores": "2", "kube-apiserver": "v1.37.2", "date": rep.Date} {
		if p.header[k] != v {
			t.Errorf("configuration %s: %q, want %q", k, p.header[k], v)
		}
	}
	want := map[string]int{
		"Burst/objects=100/mode=bare": 2, "Burst/objects=100/mode=kubefeed-jetstream": 2,
		"Steady/rate=500/mode=kubefeed-jetstream": 1, "Steady/rate=500/mode=bare-latency": 1,
		"Memory/objects=1000/mode=kubefeed-discard": 1, "Emit/objects=100/mode=kubefeed-emit": 1,
		"Network/delay=1ms/objects=100/mode=ceiling-webhook": 1, "Kafka/objects=100/mode=kafka-ceiling": 1,
		"Events/load=burst/objects=100/mode=kubefeed-events-enrich": 2, "Events/load=memory/objects=1000/mode=events-bare-dynamic": 1,
		"DeleteCollection/objects=100/checkpoint=jetstream": 2, "Failover/objects=100/standby=cold": 1, "Failover/objects=100/standby=warm": 1,
		"Sharding/objects=1200/mode=single": 1, "Sharding/objects=1200/mode=server-side": 1,
	}
	for name, n := range want {
		if names[name] != n {
			t.Errorf("%s: %d lines, want %d (one per run)", name, names[name], n)
		}
	}
	// Every case: 4 burst modes, 2×2 steady, 2 memory, emit, 4 network,
	// 4 Kafka, 2×4 + 1 Events, 3 deletecollection, 2 failover, 3 sharding.
	if len(names) != 4+4+2+1+4+4+9+3+2+3 {
		t.Errorf("%d cases, want %d: %v", len(names), 4+4+2+1+4+4+9+3+2+3, names)
	}
	// Sections measured at another time carry their own date.
	for name, date := range map[string]string{"Burst/objects=100/mode=bare": rep.Date, "Events/load=burst/objects=100/mode=events-bare": rep.EventsDate,
		"DeleteCollection/objects=100/checkpoint=none": rep.Delete.Date, "Failover/objects=100/standby=warm": rep.Failover.Date,
		"Sharding/objects=1200/mode=client-side": rep.Sharding.Date, "Kafka/objects=100/mode=kafka-ceiling": rep.Kafka.Date,
		"Emit/objects=100/mode=kubefeed-emit": rep.Date} {
		if p.date[name] != date {
			t.Errorf("%s: date %q, want %q", name, p.date[name], date)
		}
	}
	if !strings.Contains(string(txt), "\nBenchmarkDiffPod-2 ") {
		t.Error("the in-process benchmarks are not in it")
	}
	if strings.Contains(string(txt), "p50-ms") {
		t.Error("a value the json does not hold (p50) is written")
	}
	// A failover's counts are written when zero: no LIST is the point.
	if !regexp.MustCompile(`\nBenchmarkFailover/objects=100/standby=warm +1 16\.00 failover-sec 15\.90 lease-sec 0 lists 0 watch-lists 2\.000 watch-events `).MatchString(string(txt)) {
		t.Errorf("the warm failover's line lacks its zero counts:\n%s", txt)
	}
}

// The committed benchmarks.json, and an empty report, give text in the
// format too.
func TestBenchfmtDocs(t *testing.T) {
	rep, err := readReport(filepath.Join("..", "..", "..", "docs", "benchmarks.json"), false)
	if err != nil {
		t.Fatal(err)
	}
	for name, rep := range map[string]report{"docs": rep, "empty": {}} {
		var b bytes.Buffer
		if err := writeBenchfmt(&b, rep); err != nil {
			t.Fatal(err)
		}
		names := checkBenchfmt(t, b.String()).names
		if name == "docs" && names["Burst/objects=5000/mode=bare"] != len(rep.Burst["bare"]) {
			t.Errorf("docs: %d burst lines of bare, want %d", names["Burst/objects=5000/mode=bare"], len(rep.Burst["bare"]))
		}
	}
}
