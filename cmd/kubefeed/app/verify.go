package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// verifyOptions are the flags of verify.
type verifyOptions struct {
	config, sink, output string
	timeout              time.Duration
	// fromSnapshot: each completed snapshot in the feed is the baseline of
	// its resource (consumer.Options.FromSnapshot).
	fromSnapshot bool
}

func newVerifyCmd(g *globalFlags, stdout io.Writer) *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify --config FILE --sink NAME [-o text|json]",
		Short: "Rebuild the state a JetStream or Kafka sink stored and compare it with a live LIST (exit 3 when they differ)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "text" && o.output != "json" {
				return usageErr(fmt.Errorf("-o %q: use text or json", o.output))
			}
			if o.sink == "" {
				return usageErr(errors.New("--sink is required: the name of a jetstream or kafka sink of the config"))
			}
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn"
			}
			if !cmd.Flags().Changed("log-format") {
				g.logFormat = "console"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return runVerify(ctx, g, o, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "path to the config file")
	f.StringVar(&o.sink, "sink", "", "the jetstream sink whose stream is read, or the kafka sink whose topics are read")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound for the whole comparison")
	f.BoolVar(&o.fromSnapshot, "from-snapshot", false, "check the feed as read from its last completed snapshot of each resource (kubefeed snapshot): what the feed held before it and the snapshot did not show is not compared; exit 2 when the feed has no completed snapshot")
	return cmd
}

// verifyReport is what verify prints (-o json as is). A JetStream sink's
// read fills Stream, Subjects and Read; a Kafka sink's Topics and Kafka.
type verifyReport struct {
	Match       bool                      `json:"match"`
	Sink        string                    `json:"sink"`
	Stream      string                    `json:"stream,omitempty"`
	Subjects    []string                  `json:"subjects,omitempty"`
	Topics      []string                  `json:"topics,omitempty"`
	Compared    int                       `json:"compared"`
	Differences []*difference             `json:"differences"`
	Predating   []string                  `json:"predatingFeed,omitempty"`
	NotCompared []notCompared             `json:"notCompared,omitempty"`
	Gaps        []consumer.Gap            `json:"gaps,omitempty"`
	BadMessages []string                  `json:"badMessages,omitempty"`
	Read        *consumer.ReadResult      `json:"read,omitempty"`
	Kafka       *consumer.KafkaReadResult `json:"kafka,omitempty"`
	// Snapshots are the completed snapshots read (--from-snapshot).
	Snapshots []consumer.Snapshot `json:"snapshots,omitempty"`
}

// feed is how verify reads what a sink stored: read applies what the sink
// holds now to the state, from where the last read stopped (the first
// from the start), and span is what the reads covered, as compareAll
// weighs it (messages, the first one's time, whether older ones were
// removed).
type feed interface {
	read(ctx context.Context, state *consumer.State) error
	span() consumer.ReadResult
}

func runVerify(ctx context.Context, g *globalFlags, o *verifyOptions, stdout io.Writer) error {
	cfg, err := loadConfig(o.config)
	if err != nil {
		return err
	}
	sc, err := verifiedSinkOf(cfg, o.sink)
	if err != nil {
		return usageErr(err)
	}
	log, err := newLogger(g)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	rc, _, err := clientConfig(g)
	if err != nil {
		return usageErr(err)
	}
	rc.Timeout = time.Minute // bounds each request, discovery included
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return usageErr(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return usageErr(err)
	}
	// Tell "the API server does not answer" (2) from "the config names a
	// resource it does not have" (1) before resolving.
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return runtimeErr(fmt.Errorf("api server: %w", err))
	}
	scopes, skipped, err := verifyScopes(ctx, cfg, o.sink, resource.NewDiscoveryResolver(cs.Discovery()), dyn)
	if err != nil {
		return err
	}
	rep := &verifyReport{Sink: o.sink, NotCompared: skipped}
	var fd feed
	switch {
	case sc.JetStream != nil:
		jf, err := openJetStreamFeed(ctx, cfg.Cluster, o.sink, sc.JetStream, rep, log)
		if err != nil {
			return err
		}
		defer jf.close()
		fd = jf
	default:
		if o.fromSnapshot {
			return usageErr(fmt.Errorf("--from-snapshot reads a jetstream sink: sink %s is kafka, whose partitions are not ordered among each other", o.sink))
		}
		kf, err := openKafkaFeed(cfg.Cluster, o.sink, sc.Kafka, scopes, rep)
		if err != nil {
			return err
		}
		fd = kf
	}
	state := consumer.New(consumer.Options{FromSnapshot: o.fromSnapshot})
	if err := fd.read(ctx, state); err != nil {
		return err
	}
	if o.fromSnapshot {
		if rep.Snapshots = state.Snapshots(); len(rep.Snapshots) == 0 {
			return runtimeErr(fmt.Errorf("--from-snapshot: sink %s holds no completed snapshot (ask for one with kubefeed snapshot)", o.sink))
		}
	}
	live, err := listScopes(ctx, dyn, scopes)
	if err != nil {
		return runtimeErr(err)
	}
	diffs, predating, compared := compareAll(state, live, scopes, fd.span())
	if len(diffs) > 0 {
		// They may have changed during the comparison: read the feed's
		// tail, GET them again, and keep those that still differ.
		if err := fd.read(ctx, state); err != nil {
			return err
		}
		if diffs, err = recheck(ctx, dyn, state, scopes, diffs, fd.span()); err != nil {
			return runtimeErr(err)
		}
	}
	rep.Differences, rep.Predating, rep.Compared = diffs, predating, compared
	rep.Match = len(diffs) == 0
	rep.Gaps = state.Gaps()
	if err := printReport(stdout, o.output, rep); err != nil {
		return runtimeErr(err)
	}
	if !rep.Match {
		return &exitError{code: exitDiffer, err: fmt.Errorf("%d of %d objects differ between sink %s and the cluster", len(diffs), compared, o.sink)}
	}
	return nil
}

// verifiedSinkOf finds the named sink and checks that verify can read it:
// a jetstream sink (its stream) or a kafka sink (its topics).
func verifiedSinkOf(cfg *config.Config, name string) (config.Sink, error) {
	var names []string
	for _, s := range cfg.Sinks {
		if s.Name != name {
			names = append(names, s.Name)
			continue
		}
		if s.JetStream == nil && s.Kafka == nil {
			return config.Sink{}, fmt.Errorf("sink %q is a %s sink: verify reads what a jetstream sink stored in its stream or a kafka sink in its topics", name, sinkKind(s))
		}
		return s, nil
	}
	return config.Sink{}, fmt.Errorf("no sink named %q in the config (its sinks: %s)", name, strings.Join(names, ", "))
}

// jetStreamFeed reads a jetstream sink's stream, for the sink's cluster.
type jetStreamFeed struct {
	js        jetstream.JetStream
	closeNATS func()
	sink      string
	rep       *verifyReport // Stream, Subjects, Read, BadMessages
}

func openJetStreamFeed(ctx context.Context, cluster, sink string, sc *config.JetStreamSink, rep *verifyReport, log *zap.Logger) (*jetStreamFeed, error) {
	subj, err := natsconn.CompileSubject(sc.Subject)
	if err != nil {
		return nil, usageErr(fmt.Errorf("sink %s: subject: %w", sink, err))
	}
	js, closeNATS, err := connectJetStream(ctx, sc.NATSConnection, log)
	if err != nil {
		return nil, err
	}
	rep.Stream, rep.Subjects = sc.Stream, []string{subj.StreamSubject(cluster)}
	return &jetStreamFeed{js: js, closeNATS: closeNATS, sink: sink, rep: rep}, nil
}

func (f *jetStreamFeed) read(ctx context.Context, state *consumer.State) error {
	rep := f.rep
	var start uint64
	if rep.Read != nil {
		start = rep.Read.LastSeq + 1
	}
	rr, err := consumer.ReadJetStream(ctx, f.js, state, consumer.ReadOptions{
		Stream: rep.Stream, Subjects: rep.Subjects, StartSeq: start,
		OnError: func(_ uint64, err error) error { rep.BadMessages = append(rep.BadMessages, err.Error()); return nil },
	})
	if err != nil {
		return runtimeErr(fmt.Errorf("read sink %s: %w", f.sink, err))
	}
	if rep.Read == nil {
		rep.Read = &rr
	} else if rr.Messages > 0 {
		rep.Read.LastSeq, rep.Read.EndSeq = rr.LastSeq, rr.EndSeq
		rep.Read.Messages += rr.Messages
	}
	return nil
}

func (f *jetStreamFeed) span() consumer.ReadResult {
	if f.rep.Read == nil {
		return consumer.ReadResult{}
	}
	return *f.rep.Read
}

func (f *jetStreamFeed) close() { f.closeNATS() }

func sinkKind(s config.Sink) string {
	switch {
	case s.Stdout != nil:
		return "stdout"
	case s.File != nil:
		return "file"
	case s.NATS != nil:
		return "nats"
	case s.Webhook != nil:
		return "webhook"
	case s.Kafka != nil:
		return "kafka"
	case s.OTLP != nil:
		return "otlp"
	}
	return "non-jetstream"
}

// connectJetStream dials NATS and waits (bounded) for the connection.
func connectJetStream(ctx context.Context, c config.NATSConnection, log *zap.Logger) (jetstream.JetStream, func(), error) {
	nc, err := natsconn.Connect(c, log.Named("nats"))
	if err != nil {
		return nil, nil, usageErr(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if !nc.IsConnected() {
		last := nc.LastError()
		nc.Close()
		return nil, nil, runtimeErr(fmt.Errorf("nats %s not reachable: %v", natsconn.Redact(c.Servers), last))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, runtimeErr(fmt.Errorf("jetstream: %w", err))
	}
	closeNATS := func() {
		// A close of our own is no disconnection to warn about.
		nc.SetDisconnectErrHandler(nil)
		nc.Close()
	}
	return js, closeNATS, nil
}

// coveringScope is the first scope an object of the feed belongs to.
func coveringScope(scopes []*verifyScope, e consumer.Entry) *verifyScope {
	for _, s := range scopes {
		if s.covers(e) {
			return s
		}
	}
	return nil
}

// predates reports whether an object missing from the feed is older than
// the feed: kubefeed emits nothing for objects present when it first
// started (initialList: skip), and a stream forgets old messages (limits).
func predates(lo *liveObject, rr consumer.ReadResult) bool {
	if !lo.scope.skipsFirst && rr.StreamFirstSeq <= 1 {
		return false
	}
	// creationTimestamp has whole seconds: only a strictly earlier second
	// counts.
	return rr.Messages == 0 || lo.created.Before(rr.FirstTime.Truncate(time.Second))
}

// feedIncarnations is every incarnation the feed holds in the scopes, by
// key: the current one first, then those it shadows.
func feedIncarnations(state *consumer.State, scopes []*verifyScope) map[consumer.Key][]consumer.Entry {
	feed := map[consumer.Key][]consumer.Entry{}
	for _, e := range state.AllIncarnations() {
		if coveringScope(scopes, e) != nil {
			feed[e.Key] = append(feed[e.Key], e)
		}
	}
	return feed
}

// compareKey compares every incarnation the feed holds under one name (fes,
// the current one first) with the object the cluster holds there (lo, nil
// when none). The incarnation with the cluster's uid is compared version by
// version; every other one is extra, whoever holds the name now: its
// deletion is not in the feed. When the feed lacks the cluster's uid, its
// current incarnation is reported as another uid and the others as extra.
func compareKey(k consumer.Key, fes []consumer.Entry, lo *liveObject, scopes []*verifyScope) []*difference {
	if len(fes) == 0 {
		if d := compareOne(k, nil, lo); d != nil {
			return []*difference{d}
		}
		return nil
	}
	match := -1
	if lo != nil {
		for i := range fes {
			if fes[i].UID == lo.uid {
				match = i
				break
			}
		}
	}
	var out []*difference
	for i := range fes {
		fe := &fes[i]
		var d *difference
		switch {
		case i == match || (match < 0 && i == 0):
			d = compareOne(k, fe, lo)
		default:
			// Another incarnation than the cluster's: extra, with the
			// cluster's side when the name is held by another uid now.
			d = compareOne(k, fe, nil)
			if lo != nil {
				d.Cluster, d.scope = &side{UID: lo.uid, ResourceVersion: lo.rv}, lo.scope
			}
		}
		if d == nil {
			continue
		}
		if d.scope == nil {
			d.scope = coveringScope(scopes, *fe)
		}
		out = append(out, d)
	}
	return out
}

// incarnationsCompared counts the incarnations (uids) compared at one key:
// the feed's and the cluster's.
func incarnationsCompared(fes []consumer.Entry, lo *liveObject) int {
	n := len(fes)
	if lo == nil {
		return n
	}
	for _, fe := range fes {
		if fe.UID == lo.uid {
			return n
		}
	}
	return n + 1
}

// compareAll compares every object in scope on either side: each
// incarnation (uid) the feed holds, also one shadowed by a newer
// incarnation of its name, and each object the LIST returned. compared
// counts incarnations.
func compareAll(state *consumer.State, live map[consumer.Key]*liveObject, scopes []*verifyScope, rr consumer.ReadResult) (diffs []*difference, predating []string, compared int) {
	feed := feedIncarnations(state, scopes)
	keys := map[consumer.Key]bool{}
	for k := range feed {
		keys[k] = true
	}
	for k := range live {
		keys[k] = true
	}
	for k := range keys {
		ds := compareKey(k, feed[k], live[k], scopes)
		if len(ds) == 1 && ds[0].Problem == diffMissing && predates(live[k], rr) {
			predating = append(predating, k.String())
			continue
		}
		compared += incarnationsCompared(feed[k], live[k])
		diffs = append(diffs, ds...)
	}
	sortDiffs(diffs)
	sort.Strings(predating)
	return diffs, predating, compared
}

// recheck GETs each name that differs again and compares it with every
// incarnation the feed holds there (the caller has re-read the feed's
// tail).
func recheck(ctx context.Context, dyn dynamic.Interface, state *consumer.State, scopes []*verifyScope, diffs []*difference, rr consumer.ReadResult) ([]*difference, error) {
	var out []*difference
	var feed map[consumer.Key][]consumer.Entry
	done := map[consumer.Key]bool{}
	for _, d := range diffs {
		if done[d.Key] {
			continue
		}
		done[d.Key] = true
		lo, err := getLive(ctx, dyn, d.scope, d.Key)
		if err != nil {
			return nil, err
		}
		if feed == nil {
			feed = feedIncarnations(state, scopes)
		}
		for _, nd := range compareKey(d.Key, feed[d.Key], lo, scopes) {
			if nd.Problem == diffMissing && predates(lo, rr) {
				continue
			}
			out = append(out, nd)
		}
	}
	sortDiffs(out)
	return out, nil
}
