package main

// benchmarks.txt: the report in the Go benchmark format
// (https://go.dev/design/14313-benchmark-format), so that two runs, before
// and after a change, can be compared with benchstat (make bench-compare).
// It is written from benchmarks.json alone, so `benchrun -benchfmt` gives
// the same text for a json written before this file existed.

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
)

// A benchLine is one result: a benchmark name and its values.
type benchLine struct {
	name string
	vals []benchVal
}

type benchVal struct {
	v    float64
	unit string
}

// benchLines collects the lines of a section in order.
type benchLines []benchLine

func (ls *benchLines) add(name string, vals ...benchVal) {
	var kept []benchVal
	for _, v := range vals {
		if v.v > 0 { // a field the json does not hold for this row
			kept = append(kept, v)
		}
	}
	if len(kept) > 0 {
		*ls = append(*ls, benchLine{name, kept})
	}
}

// addAll is add for values that are measured even when zero (a count of
// LIST requests).
func (ls *benchLines) addAll(name string, vals ...benchVal) {
	*ls = append(*ls, benchLine{name, vals})
}

// resultVals are an agent's measurements; noun is what its rate and CPU
// are counted in (changes, events).
func resultVals(r result, noun string, rate bool) []benchVal {
	vs := []benchVal{{r.CPUPer1k, "CPU-sec/1k-" + noun}, {r.RSSMiB * (1 << 20), "RSS-B"},
		{r.P50Millis, "p50-ms"}, {r.P99Millis, "p99-ms"}, {r.OwnP99Millis, "own-p99-ms"}, {r.CreateP99Millis, "create-p99-ms"}}
	if rate {
		vs = append([]benchVal{{r.Rate, noun + "/s"}}, vs...)
	}
	return vs
}

// runs calls f for run i of every key, run by run: a benchmark name
// appears once per run, as benchstat expects of repeated measurements.
func runs[T any](rows map[string][]T, keys []string, f func(key string, r T)) {
	n := 0
	for _, k := range keys {
		n = max(n, len(rows[k]))
	}
	for i := range n {
		for _, k := range keys {
			if i < len(rows[k]) {
				f(k, rows[k][i])
			}
		}
	}
}

// writeBenchfmt writes rep in the Go benchmark format: configuration
// lines (goos, goarch, pkg, cpu, cores, kube-apiserver, date), a Unit line
// saying which way is better for each unit, then one line per measured
// case and run (a section the json holds only as a median gives one).
// The in-process benchmarks (go test -bench) follow as go test printed
// them.
func writeBenchfmt(w io.Writer, rep report) error {
	// A section is a block of lines, measured at date.
	type section struct {
		date  string
		lines benchLines
	}
	var burst, steady, memory, drains, kafka, events, deletes, failovers, shardings benchLines
	runs(rep.Burst, burstModes, func(m string, r result) {
		burst.add(fmt.Sprintf("Burst/objects=%d/mode=%s", r.Objects, m), resultVals(r, "changes", true)...)
	})
	for i, s := range rep.Steady {
		// The rate is the load's, in the name, not a measurement.
		steady.add(fmt.Sprintf("Steady/rate=%.0f/mode=%s", s.Rate, s.Mode), resultVals(s, "changes", false)...)
		if i < len(rep.SteadyBare) {
			b := rep.SteadyBare[i]
			steady.add(fmt.Sprintf("Steady/rate=%.0f/mode=%s", b.Rate, b.Mode), resultVals(b, "changes", false)...)
		}
	}
	for _, m := range []string{"bare", "kubefeed-discard"} {
		if r, ok := rep.Memory[m]; ok {
			memory.add(fmt.Sprintf("Memory/objects=%d/mode=%s", r.Objects, m), resultVals(r, "changes", false)...)
		}
	}
	if e := rep.Emit; e != nil {
		drains.add(fmt.Sprintf("Emit/objects=%d/mode=%s", e.Objects, e.Mode), resultVals(*e, "events", true)...)
	}
	for _, nr := range rep.Network {
		for _, r := range []result{nr.JetStreamCeil, nr.JetStream, nr.WebhookCeil, nr.Webhook} {
			drains.add(fmt.Sprintf("Network/delay=%gms/objects=%d/mode=%s", nr.DelayMillis, nr.Objects, r.Mode), resultVals(r, "events", true)...)
		}
	}
	kafkaDate := rep.Date
	if k := rep.Kafka; k != nil {
		if k.Date != "" {
			kafkaDate = k.Date
		}
		for _, r := range []result{k.Kubefeed, k.Exporter, k.JetStream, k.Ceiling} {
			if r.Mode == "" {
				continue // no drain into no sink in reports before it
			}
			kafka.add(fmt.Sprintf("Kafka/objects=%d/mode=%s", r.Objects, r.Mode), resultVals(r, "events", true)...)
		}
	}
	if len(rep.Events) > 0 {
		var keys []string
		for _, load := range eventLoads {
			for _, m := range eventModes {
				keys = append(keys, load.name+"/"+m)
			}
		}
		keys = append(keys, "memory/events-bare-dynamic", "memory/kubefeed-events-discard")
		var unknown []string // keys this version does not name
		for k := range rep.Events {
			if !slices.Contains(keys, k) {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		keys = append(keys, unknown...)
		runs(rep.Events, keys, func(k string, r result) {
			load, mode, _ := strings.Cut(k, "/")
			events.add(fmt.Sprintf("Events/load=%s/objects=%d/mode=%s", load, r.Objects, mode), resultVals(r, "events", load != "memory")...)
		})
	}
	deleteDate := ""
	if d := rep.Delete; d != nil {
		deleteDate = d.Date
		runs(d.Rows, deleteModes, func(m string, r deleteRow) {
			deletes.add(fmt.Sprintf("DeleteCollection/objects=%d/checkpoint=%s", d.Objects, m),
				benchVal{r.Seconds, "deliver-sec"}, benchVal{r.Rate, "deletions/s"}, benchVal{r.CPUSeconds, "CPU-sec"},
				benchVal{r.CallSeconds, "call-sec"}, benchVal{r.AddSeconds, "add-sec"}, benchVal{r.Flushes, "flushes"},
				benchVal{r.CheckpointMiB * (1 << 20), "checkpoint-B"})
		})
	}
	failoverDate := ""
	if f := rep.Failover; f != nil {
		failoverDate = f.Date
		for _, r := range f.Rows {
			failovers.addAll(fmt.Sprintf("Failover/objects=%d/standby=%s", f.Objects, r.Standby),
				benchVal{r.Seconds, "failover-sec"}, benchVal{r.LeaderSeconds, "lease-sec"}, benchVal{r.Lists, "lists"},
				benchVal{r.WatchLists, "watch-lists"}, benchVal{r.WatchEvents, "watch-events"}, benchVal{r.CPUSeconds, "CPU-sec"},
				benchVal{r.RSSBeforeMiB * (1 << 20), "standby-RSS-B"}, benchVal{r.RSSAfterMiB * (1 << 20), "RSS-B"}, benchVal{r.PeakRSSMiB * (1 << 20), "peak-RSS-B"})
		}
	}
	shardingDate := ""
	if s := rep.Sharding; s != nil {
		shardingDate = s.Date
		for _, r := range s.Rows {
			shardings.add(fmt.Sprintf("Sharding/objects=%d/mode=%s", s.Objects, r.Mode),
				benchVal{r.Rate, "events/s"}, benchVal{r.StartSeconds, "start-to-drained-sec"}, benchVal{r.KubefeedCPU, "CPU-sec"},
				benchVal{r.maxRSS(syncedRSS) * (1 << 20), "max-synced-RSS-B"}, benchVal{r.maxRSS(drainedRSS) * (1 << 20), "max-RSS-B"},
				benchVal{r.maxRSS(peakRSS) * (1 << 20), "max-peak-RSS-B"})
		}
	}
	sections := []section{{rep.Date, burst}, {rep.Date, steady}, {rep.Date, memory}, {rep.Date, drains}, {kafkaDate, kafka}, {rep.EventsDate, events}, {deleteDate, deletes}, {failoverDate, failovers}, {shardingDate, shardings}}

	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 1, ' ', 0)
	cpu, cores := rep.Machine, ""
	if m := machineRE.FindStringSubmatch(rep.Machine); m != nil {
		cpu, cores = m[1], m[2]
	}
	for _, kv := range [][2]string{{"goos", configOf(rep.GoBench, "goos")}, {"goarch", configOf(rep.GoBench, "goarch")},
		{"pkg", benchrunPkg}, {"cpu", cpu}, {"cores", cores}, {"kube-apiserver", rep.KubeAPIServer}, {"date", rep.Date}} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "%s: %s\n", kv[0], kv[1])
		}
	}
	var units []string
	for _, sec := range sections {
		for _, l := range sec.lines {
			for _, v := range l.vals {
				if !slices.Contains(units, v.unit) {
					units = append(units, v.unit)
				}
			}
		}
	}
	for _, u := range units {
		better := "lower"
		if strings.HasSuffix(u, "/s") {
			better = "higher"
		}
		fmt.Fprintf(tw, "Unit %s better=%s\n", u, better)
	}
	date := rep.Date
	for _, sec := range sections {
		if len(sec.lines) == 0 {
			continue
		}
		fmt.Fprintln(tw)
		// A section measured at another time (-kafka-only, -events-only,
		// -delete-only, -failover-only, -sharding-only) says so; make bench-compare ignores the date.
		if sec.date != "" && sec.date != date {
			fmt.Fprintf(tw, "date: %s\n", sec.date)
			date = sec.date
		}
		for _, l := range sec.lines {
			fmt.Fprintf(tw, "Benchmark%s\t1", l.name)
			for _, v := range l.vals {
				fmt.Fprintf(tw, " %s %s", number(v.v), v.unit)
			}
			fmt.Fprintln(tw)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.GoBench != "" {
		b.WriteString("\n")
		if date != rep.Date && rep.Date != "" {
			fmt.Fprintf(&b, "date: %s\n", rep.Date)
		}
		b.WriteString(strings.TrimRight(rep.GoBench, "\n") + "\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// benchrunPkg is the pkg of benchrun's own lines (go test's lines that
// follow name theirs).
const benchrunPkg = "github.com/kubefeed/kubefeed/test/cmd/benchrun"

// machineRE splits machine()'s "<cpu model>, <n> cores".
var machineRE = regexp.MustCompile(`^(.*), (\d+) cores$`)

// configOf is the value of a "key: value" line of go test's output.
func configOf(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// number prints v with four or five significant digits, as the testing
// package prints a benchmark's metrics.
func number(v float64) string {
	switch a := math.Abs(v); {
	case a >= 999.95:
		return fmt.Sprintf("%.0f", v)
	case a >= 99.995:
		return fmt.Sprintf("%.1f", v)
	case a >= 9.9995:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.99995:
		return fmt.Sprintf("%.3f", v)
	case a >= 0.099995:
		return fmt.Sprintf("%.4f", v)
	case a >= 0.0099995:
		return fmt.Sprintf("%.5f", v)
	default:
		return fmt.Sprintf("%.6g", v)
	}
}
