package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// reportText holds the prose of benchmarks.md and the chart,
// benchmarks.svg; what they show is computed here.
//
//go:embed report.tmpl
var reportText string

var reportTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"div":       func(a, b float64) float64 { return a / b },
	"sum":       func(a, b float64) float64 { return a + b },
	"thousands": thousands,
	"gate":      func() string { return shardingGate },
	"inc":       func(i int) int { return i + 1 },
	"span":      span,
	"spanMiB":   func(lo, hi float64) string { return spanf("%.0f", lo, hi) },
}).Parse(reportText))

// burstModes are the burst's modes, in the order of the report.
var burstModes = []string{"bare", "kubefeed-discard", "kubefeed-file", "kubefeed-jetstream"}

func rateOf(r result) float64 { return r.Rate }
func cpuOf(r result) float64  { return r.CPUPer1k }
func rssOf(r result) float64  { return r.RSSMiB }

// writeReport writes out/benchmarks.json and renders benchmarks.md,
// benchmarks.svg and benchmarks.txt (benchfmt.go) from it.
func writeReport(rep report, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(rep, "", " ")
	if err := os.WriteFile(filepath.Join(out, "benchmarks.json"), js, 0o644); err != nil {
		return err
	}
	var txt bytes.Buffer
	if err := writeBenchfmt(&txt, rep); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "benchmarks.txt"), txt.Bytes(), 0o644); err != nil {
		return err
	}
	for name, data := range map[string]any{"benchmarks.md": newView(rep), "benchmarks.svg": newChart(rep)} {
		var b bytes.Buffer
		if err := reportTmpl.ExecuteTemplate(&b, name, data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// view is what benchmarks.md shows.
type view struct {
	Date, Machine string
	Runs          int // of the burst
	BurstRows     []modeLine
	SteadyRows    []steadyLine
	MemoryRows    []modeLine
	Kafka         *kafkaReport
	KafkaRecord   int
	OTLP          *otlpReport
	Network       []netRow
	NetFlat       bool // kubefeed's JetStream rate within 30 % at every delay
	Delete        *deleteView
	Failover      *failoverView
	Sharding      *shardingView
	Targets       []target
	Events        *eventsView
	GoBench       string
}

// modeLine is a table row of a mode's medians and their ratios to the
// baseline's (X).
type modeLine struct {
	Mode                              string
	Objects                           int
	Rate, RateX, CPU, CPUX, RSS, RSSX float64
}

// steadyLine is a steady rate's row, with the bare informer's at the same
// rate.
type steadyLine struct {
	result
	Bare *result
}

// target is a row of a targets table.
type target struct{ Name, Got, Met string }

func newTarget(name, got string, ok bool) target {
	if ok {
		return target{name, got, "yes"}
	}
	return target{name, got, "**no**"}
}

func newView(rep report) view {
	bare := rep.Burst["bare"]
	v := view{Date: rep.Date, Machine: rep.Machine, Runs: len(bare), Kafka: rep.Kafka, KafkaRecord: kafkaCeilingRecord, OTLP: rep.OTLP,
		Network: rep.Network, Targets: targets(rep), Events: newEventsView(rep), GoBench: rep.GoBench}
	for _, m := range burstModes {
		rs := rep.Burst[m]
		v.BurstRows = append(v.BurstRows, modeLine{Mode: m, Rate: median(rs, rateOf), RateX: median(rs, rateOf) / median(bare, rateOf),
			CPU: median(rs, cpuOf), CPUX: median(rs, cpuOf) / median(bare, cpuOf), RSS: median(rs, rssOf)})
	}
	for i, s := range rep.Steady {
		v.SteadyRows = append(v.SteadyRows, steadyLine{result: s})
		if i < len(rep.SteadyBare) {
			v.SteadyRows[i].Bare = &rep.SteadyBare[i]
		}
	}
	if len(rep.Memory) > 0 {
		for _, m := range []string{"bare", "kubefeed-discard"} {
			r := rep.Memory[m]
			v.MemoryRows = append(v.MemoryRows, modeLine{Mode: m, Objects: r.Objects, RSS: r.RSSMiB, RSSX: r.RSSMiB / rep.Memory["bare"].RSSMiB})
		}
	}
	if len(rep.Network) > 0 {
		lo, hi := rep.Network[0].JetStream.Rate, rep.Network[0].JetStream.Rate
		for _, r := range rep.Network {
			lo, hi = min(lo, r.JetStream.Rate), max(hi, r.JetStream.Rate)
		}
		v.NetFlat = lo > 0 && hi/lo < 1.3
	}
	if d := rep.Delete; d != nil && len(d.Rows["none"]) > 0 {
		v.Delete = newDeleteView(d)
	}
	if f := rep.Failover; f != nil && len(f.Rows) > 0 {
		v.Failover = newFailoverView(f)
	}
	if s := rep.Sharding; s != nil && len(s.runs("single")) > 0 {
		v.Sharding = newShardingView(s)
	}
	return v
}

// targets are the rows of the main targets table.
func targets(rep report) []target {
	var ts []target
	row := func(name, got string, ok bool) { ts = append(ts, newTarget(name, got, ok)) }
	bare, jsr := rep.Burst["bare"], rep.Burst["kubefeed-jetstream"]
	rr := median(jsr, rateOf) / median(bare, rateOf)
	row("JetStream end-to-end rate ≥ 0.8× bare informer", fmt.Sprintf("%.2f×", rr), rr >= 0.8)
	cr := median(jsr, cpuOf) / median(bare, cpuOf)
	row("CPU per 1,000 changes to JetStream ≤ 1.3× bare", fmt.Sprintf("%.2f×", cr), cr <= 1.3)
	if m, ok := rep.Memory["kubefeed-discard"]; ok {
		mr := m.RSSMiB / rep.Memory["bare"].RSSMiB
		stretch := ""
		if mr <= 0.75 {
			stretch = ", stretch 0.75× met"
		}
		row(fmt.Sprintf("RSS with %dk cached 1 KiB ConfigMaps ≤ 1.0× a bare dynamic informer (stretch 0.75×)", m.Objects/1000),
			fmt.Sprintf("%.0f vs %.0f MiB, %.2f×%s", m.RSSMiB, rep.Memory["bare"].RSSMiB, mr, stretch), mr <= 1.0)
	}
	for i, st := range rep.Steady {
		if st.Rate != 500 {
			continue
		}
		got := fmt.Sprintf("%.1f ms", st.P99Millis)
		if i < len(rep.SteadyBare) {
			got += fmt.Sprintf(" (a bare informer's notification: %.1f ms)", rep.SteadyBare[i].P99Millis)
		}
		if st.OwnP99Millis > 0 {
			got += fmt.Sprintf("; kubefeed's own path, notification → PubAck: ≤ %g ms", st.OwnP99Millis)
		}
		if st.CreateP99Millis > 0 {
			got += fmt.Sprintf("; the create request itself: %.1f ms", st.CreateP99Millis)
		}
		row("p99 observation → JetStream ack ≤ 15 ms at 500/s (measured from object creation, so including the API server)", got, st.P99Millis <= 15)
		if i < len(rep.SteadyBare) && st.OwnP99Millis > 0 {
			// No regression: kubefeed's tail from creation is no worse
			// than what any watcher gets under the same load, plus
			// kubefeed's own path.
			bare := rep.SteadyBare[i].P99Millis
			row("no regression at 500/s: p99 creation → ack ≤ a bare informer's p99 creation → notification in the same run + kubefeed's own p99",
				fmt.Sprintf("%.1f ms ≤ %.1f + %g ms", st.P99Millis, bare, st.OwnP99Millis), st.P99Millis <= bare+st.OwnP99Millis)
		}
	}
	for _, bm := range []struct {
		name, target string
		min          float64
	}{{"BenchmarkPipelinePods", "in-process pipeline ≥ 10k modified changes/s, 4.5 KiB Pods", 10000}, {"BenchmarkPipelineConfigMaps", "in-process pipeline ≥ 20k modified changes/s, 1 KiB objects", 20000}} {
		v := benchMetric(rep.GoBench, bm.name, "changes/s")
		epc := benchMetric(rep.GoBench, bm.name, "events/change")
		// The headline counts only at 1.0 events per change: merged
		// versions would flatter it.
		row(bm.target+" at 1.0 events per change", fmt.Sprintf("%.0f/s at %.3f events/change", v, epc), v >= bm.min && epc == 1)
	}
	// Issue 24's attribution cost: the same Deployment changes from the
	// watch stream to the encoded event, with and without the option.
	// One pair (off, then on) of 3000 changes per -count round: single
	// pairs spread 1.0–1.5× on a shared machine, so the row is the median
	// pair's ratio.
	if pairs := benchPairs(rep.GoBench, "BenchmarkAttribution/off", "BenchmarkAttribution/on", "cpu-ns/change"); len(pairs) > 0 {
		p := pairs[len(pairs)/2]
		r := p[1] / p[0]
		row("`attribution: managers` ≤ 1.15× the CPU per change without it (BenchmarkAttribution: a Deployment with three field managers, watch stream → encoded event; median of the rounds' ratios)",
			fmt.Sprintf("%.2f× (%.0f vs %.0f CPU ns per change; %d rounds, ratios %s)", r, p[1], p[0], len(pairs), pairRatios(pairs)), r <= 1.15)
	}
	for _, nr := range rep.Network {
		switch nr.DelayMillis {
		case 0:
			row("drain into JetStream on loopback (0 ms) ≥ 20,000 events/s", fmt.Sprintf("%.0f/s", nr.JetStream.Rate), nr.JetStream.Rate >= 20000)
		case 1:
			r := nr.JetStream.Rate / nr.JetStreamCeil.Rate
			row("drain into JetStream through 1 ms each way ≥ 0.5× its async ceiling on the same link", fmt.Sprintf("%.2f× (%.0f/s of %.0f/s)", r, nr.JetStream.Rate, nr.JetStreamCeil.Rate), r >= 0.5)
			row(fmt.Sprintf("webhook with `batch: %d` through 1 ms each way ≥ 10,000 events/s", nr.WebhookBatch), fmt.Sprintf("%.0f/s", nr.Webhook.Rate), nr.Webhook.Rate >= 10000)
		}
	}
	if f := rep.Failover; f != nil {
		ts = append(ts, failoverTargets(f)...)
	}
	if s := rep.Sharding; s != nil {
		ts = append(ts, shardingTargets(s)...)
	}
	if k := rep.Kafka; k != nil && k.Ceiling.Rate > 0 {
		r := k.Kubefeed.Rate / k.Ceiling.Rate
		got := fmt.Sprintf("%.2f× (%.0f/s of %.0f/s, %.3f CPU s per 1k events)", r, k.Kubefeed.Rate, k.Ceiling.Rate, k.Kubefeed.CPUPer1k)
		if k.Exporter.Rate > 0 {
			got += fmt.Sprintf("; kubefeed into no sink at all: %.2f×", k.Exporter.Rate/k.Ceiling.Rate)
		}
		row("drain into Kafka ≥ 0.5× a bare franz-go producer on the same broker in the same run (issue 25)", got, r >= 0.5)
	}
	if rep.Emit != nil {
		row(fmt.Sprintf("`initialList: emit` drains %dk existing objects at ≥ 10k/s (first to last event)", rep.Emit.Objects/1000), fmt.Sprintf("%.0f/s", rep.Emit.Rate), rep.Emit.Rate >= 10000)
	} else {
		ts = append(ts, target{"`initialList: emit` drains 20k existing objects at ≥ 10k/s", "not measured in this run", "—"})
	}
	return ts
}

// deleteLine is a checkpoint mode's row: medians, and ratios to no
// checkpoint (X).
type deleteLine struct {
	Mode                                                 string
	Seconds, After, Rate, RateX, CPU, CPUX, Flushes, MiB float64
}

// deleteView is the deletecollection section.
type deleteView struct {
	*deleteReport
	Runs             int
	Lines            []deleteLine
	CallMin, CallMax float64 // of the DeleteCollection calls
	KeepsUp          bool    // no checkpoint: deliveries trail the call < 0.5 s
}

func newDeleteView(d *deleteReport) *deleteView {
	base := d.Rows["none"]
	v := &deleteView{deleteReport: d, Runs: len(base)}
	secs := func(r deleteRow) float64 { return r.Seconds }
	rate := func(r deleteRow) float64 { return r.Rate }
	cpu := func(r deleteRow) float64 { return r.CPUSeconds }
	after := func(r deleteRow) float64 { return max(r.Seconds-r.CallSeconds, 0) }
	flushes := func(r deleteRow) float64 { return r.Flushes }
	mib := func(r deleteRow) float64 { return r.CheckpointMiB }
	for _, m := range deleteModes {
		if rs := d.Rows[m]; len(rs) > 0 {
			v.Lines = append(v.Lines, deleteLine{m, median(rs, secs), median(rs, after), median(rs, rate), medianRatio(rs, base, rate),
				median(rs, cpu), medianRatio(rs, base, cpu), median(rs, flushes), median(rs, mib)})
		}
	}
	v.KeepsUp = median(base, after) < 0.5
	for _, rs := range d.Rows {
		for _, r := range rs {
			if v.CallMin == 0 || r.CallSeconds < v.CallMin {
				v.CallMin = r.CallSeconds
			}
			v.CallMax = max(v.CallMax, r.CallSeconds)
		}
	}
	return v
}

// eventsView is the Events section.
type eventsView struct {
	Date          string
	N, Pods, Runs int
	Loads         []struct {
		Name string
		Rows []modeLine
	}
	Targets []target
}

func newEventsView(rep report) *eventsView {
	if len(rep.Events) == 0 {
		return nil
	}
	v := &eventsView{Date: rep.EventsDate, N: rep.EventsN, Pods: eventPods, Runs: len(rep.Events["burst/events-bare"])}
	row := func(name, got string, ok bool) { v.Targets = append(v.Targets, newTarget(name, got, ok)) }
	for _, load := range eventLoads {
		bare := rep.Events[load.name+"/events-bare"]
		if len(bare) == 0 {
			continue
		}
		var rows []modeLine
		for _, m := range eventModes {
			rs := rep.Events[load.name+"/"+m]
			rows = append(rows, modeLine{Mode: m, Rate: median(rs, rateOf), CPU: median(rs, cpuOf), CPUX: medianRatio(rs, bare, cpuOf), RSS: median(rs, rssOf)})
		}
		v.Loads = append(v.Loads, struct {
			Name string
			Rows []modeLine
		}{load.name, rows})
	}
	for _, load := range eventLoads {
		bares := rep.Events[load.name+"/events-bare"]
		bare := median(bares, cpuOf)
		if bare == 0 {
			continue
		}
		for _, m := range []string{"kubefeed-events-file", "kubefeed-events-jetstream"} {
			rs := rep.Events[load.name+"/"+m]
			r := medianRatio(rs, bares, cpuOf)
			row(fmt.Sprintf("CPU per 1,000 Events, %s, %s ≤ 1.5× bare typed informer", strings.TrimPrefix(m, "kubefeed-events-"), load.name),
				fmt.Sprintf("%.2f× (ratio of the medians: %.2f×)", r, median(rs, cpuOf)/bare), r <= 1.5)
		}
		files := rep.Events[load.name+"/kubefeed-events-file"]
		if file := median(files, cpuOf); file > 0 {
			enrich := rep.Events[load.name+"/kubefeed-events-enrich"]
			r := medianRatio(enrich, files, cpuOf) - 1
			row(fmt.Sprintf("enrichment adds ≤ 10 %% CPU (%s, file)", load.name),
				fmt.Sprintf("%+.0f %% (ratio of the medians: %+.0f %%)", r*100, (median(enrich, cpuOf)/file-1)*100), r <= 0.10)
		}
	}
	if m := rep.Events["memory/kubefeed-events-discard"]; len(m) > 0 {
		base := rep.Events["memory/events-bare-dynamic"]
		if len(base) > 0 && base[0].RSSMiB > 0 {
			r := m[0].RSSMiB / base[0].RSSMiB
			row(fmt.Sprintf("RSS with %d Events cached ≤ 1.0× bare dynamic informer", m[0].Objects), fmt.Sprintf("%.0f vs %.0f MiB, %.2f×", m[0].RSSMiB, base[0].RSSMiB, r), r <= 1.0)
		}
	}
	return v
}

// chartGroup is one group of benchmarks.svg's bars: each burst mode's
// median of one measure, with its ratio to bare.
type chartGroup struct {
	X     int
	Title string
	Bars  []chartBar
}

type chartBar struct {
	X, Y, H, LabelY int
	Color, Name     string
	V, Ratio        float64
}

func newChart(rep report) []chartGroup {
	colors := []string{"#5a5a5a", "#4285f4", "#34a853", "#ea4335"}
	var gs []chartGroup
	for gi, g := range []struct {
		title string
		f     func(result) float64
	}{{"changes/s", rateOf}, {"CPU seconds per 1,000 changes", cpuOf}} {
		x0 := 40 + gi*430
		base, top := median(rep.Burst["bare"], g.f), 0.0
		for _, m := range burstModes {
			top = max(top, median(rep.Burst[m], g.f))
		}
		cg := chartGroup{X: x0, Title: g.title}
		for i, m := range burstModes {
			v, h := median(rep.Burst[m], g.f), 0
			if top > 0 {
				h = int(v / top * 260)
			}
			cg.Bars = append(cg.Bars, chartBar{x0 + i*95, 360 - h, h, 352 - h - 14*(i%2), colors[i], strings.TrimPrefix(m, "kubefeed-"), v, v / base})
		}
		gs = append(gs, cg)
	}
	return gs
}

// benchMetric reads a custom metric (such as changes/s) of a Go benchmark.
func benchMetric(out, name, unit string) float64 {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, name+"-") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i < len(f); i++ {
			if f[i] == unit {
				v, _ := strconv.ParseFloat(f[i-1], 64)
				return v
			}
		}
	}
	return 0
}

// benchPairs reads the value of unit of every run of the benchmarks a and
// b in out, paired in the order they ran (goBench runs rounds of a then
// b), sorted by the ratio b/a.
func benchPairs(out, a, b, unit string) [][2]float64 {
	var as, bs []float64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for i := 1; i < len(f); i++ {
			if f[i] != unit {
				continue
			}
			v, _ := strconv.ParseFloat(f[i-1], 64)
			switch {
			case strings.HasPrefix(f[0], a+"-") || f[0] == a:
				as = append(as, v)
			case strings.HasPrefix(f[0], b+"-") || f[0] == b:
				bs = append(bs, v)
			}
		}
	}
	var pairs [][2]float64
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] > 0 {
			pairs = append(pairs, [2]float64{as[i], bs[i]})
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][1]/pairs[i][0] < pairs[j][1]/pairs[j][0] })
	return pairs
}

// pairRatios lists the pairs' ratios, b/a.
func pairRatios(pairs [][2]float64) string {
	var out []string
	for _, p := range pairs {
		out = append(out, fmt.Sprintf("%.2f", p[1]/p[0]))
	}
	return strings.Join(out, ", ")
}

// thousands writes n with a comma every three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
