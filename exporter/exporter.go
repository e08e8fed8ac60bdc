package exporter

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options configure an Exporter. Config, Client, Resolver and Sinks are
// required.
type Options struct {
	Config   *config.Config
	Client   dynamic.Interface
	Resolver resource.Resolver
	// Sinks by config name; every sink of the config must be present.
	Sinks map[string]sinks.Sink
	// Stores holds the delivered state per sink; missing ones are in memory.
	Stores map[string]state.Store
	// Logger; nil means no logging.
	Logger *zap.Logger
	// ResolveRetry is how often unresolved resources are looked up again
	// (default 10s).
	ResolveRetry time.Duration
	// Now is the clock for event times (default time.Now).
	Now func() time.Time
	// Registerer receives the Prometheus metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// StartGap, when set, sends a gap marker with this reason for every
	// scope at start (a lost checkpoint: GapCheckpointLost).
	StartGap string
	// SendContext, when it ends, cancels sends in flight at once instead
	// of letting them drain (the Lease was lost: another replica
	// delivers). Nil: sends are never cancelled; the drain delivers them.
	SendContext context.Context
	// Metadata reads the objects Events point at, for rules with enrich:
	// involvedObject (nil: such rules are a configuration error).
	Metadata metadata.Interface
	// Shard, when set, restricts the feed to the objects whose uid hashes
	// into it (sharding): every list and watch carries its shardSelector,
	// which an API server with ShardedListAndWatch applies, and what else
	// arrives is dropped here (client-side, with the full watch cost).
	Shard *shard.Span
	// Standby starts Run as a warm standby: the informers list and watch,
	// and nothing is routed, stored or sent until Lead hands over the
	// sinks (Sinks may then be nil). Stores are read only from Lead on:
	// until then they may follow a shared checkpoint.
	Standby bool
	// RESTConfig, when set, is the config Client was built from: watches
	// then go through a decoder that reads each event once (watchjson.go)
	// instead of the dynamic client's. Lists stay with Client.
	RESTConfig *rest.Config

	// clientFor replaces Client in unit tests (no API server).
	clientFor func(gvr schema.GroupVersionResource, namespace string) resourceClient
}

// shared is what the scopes and the sink runners of one Exporter have in
// common, and all they get of it: the clock, the logger, the metrics, when
// each version was first observed, and the final states of deleted
// objects.
type shared struct {
	cluster    string
	origin     plan.Origin // cluster and source of the events rendered
	now        func() time.Time
	log        *zap.Logger
	metrics    *metrics
	observed   *observations // when each version was first observed
	tombstones *tombstones
	relists    atomic.Int64
	stalls     atomic.Int64
	// shard is the uid hash range fed (nil: every object), and
	// outOfShard counts what arrived outside it.
	shard      *shard.Span
	outOfShard atomic.Int64
	// standby is set while a warm standby waits for Lead: handlers keep
	// the caches, tombstones and observations, and route nothing.
	standby atomic.Bool
}

// Exporter is the running pipeline.
type Exporter struct {
	*shared
	cfg      *config.Config
	client   dynamic.Interface
	resolver resource.Resolver
	retry    time.Duration
	startGap string
	sends    context.Context // ends when sends in flight must be cancelled

	clientFor func(gvr schema.GroupVersionResource, namespace string) resourceClient

	rules   []*plan.Rule
	runners []*sinkRunner
	byName  map[string]*sinkRunner
	enrich  *enricher    // nil: no rule enriches
	watcher *watchClient // nil: the dynamic client watches

	mu         sync.Mutex
	scopes     map[scopeID]*scope
	namespaces *namespaceWatches
	parked     parkedRecords
	started    atomic.Bool
	announced  atomic.Bool // "caches synced" logged
	// announcedWarm: "standby, warm" logged.
	announcedWarm atomic.Bool
	// leads hands a standby its leadership (Lead); nil without Standby.
	leads chan leadership
	led   atomic.Bool // Lead was called
	// leadMu orders Lead against a standby's stop: once noLead is set
	// (Run stopped without leading), Lead fails and its caller keeps
	// (and closes) the sinks.
	leadMu sync.Mutex
	noLead bool
	// stopped is closed when Run returns: a snapshot still waiting for
	// its keys then gives up (ErrStopped).
	stopped chan struct{}
}

// New checks the options and builds the pipeline; Run starts it.
func New(o Options) (*Exporter, error) {
	if o.Config == nil || (o.clientFor == nil && (o.Client == nil || o.Resolver == nil)) {
		return nil, fmt.Errorf("exporter: config, client and resolver are required")
	}
	sh := &shared{cluster: o.Config.Cluster, origin: plan.NewOrigin(o.Config.Cluster), now: o.Now, log: o.Logger, shard: o.Shard,
		tombstones: &tombstones{m: map[state.Key]plan.Tombstone{}}}
	if sh.log == nil {
		sh.log = zap.NewNop()
	}
	if sh.now == nil {
		sh.now = time.Now
	}
	sh.observed = newObservations(sh.now)
	e := &Exporter{
		shared: sh, cfg: o.Config, client: o.Client, resolver: o.Resolver, retry: o.ResolveRetry, startGap: o.StartGap,
		sends: o.SendContext, clientFor: o.clientFor,
		byName: map[string]*sinkRunner{}, scopes: map[scopeID]*scope{}, stopped: make(chan struct{}),
	}
	if o.Standby {
		sh.standby.Store(true)
		e.leads = make(chan leadership, 1)
	}
	e.namespaces = newNamespaceWatches(e, e.client, e.log)
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e.metrics = newMetrics(reg, e)
	if e.retry == 0 {
		e.retry = 10 * time.Second
	}
	for _, sc := range o.Config.Sinks {
		s, ok := o.Sinks[sc.Name]
		if !ok && !o.Standby {
			return nil, fmt.Errorf("exporter: no sink given for %q", sc.Name)
		}
		st := o.Stores[sc.Name]
		if st == nil {
			st = state.NewMemoryStore()
		}
		r := newSinkRunner(e.shared, sc.Name, s, st)
		e.runners = append(e.runners, r)
		e.byName[sc.Name] = r
	}
	rules, err := plan.CompileRules(o.Config)
	if err != nil {
		return nil, err
	}
	if o.RESTConfig != nil && o.clientFor == nil {
		if e.watcher, err = newWatchClient(o.RESTConfig); err != nil {
			return nil, err
		}
	}
	e.rules = rules
	if e.enrich, err = newEnricher(o, e.shared, e.retry, reg); err != nil {
		return nil, err
	}
	for _, r := range rules {
		if r.Config.Enrich == config.EnrichInvolvedObject {
			r.Enrich = e.enrich
		}
	}
	return e, nil
}

// resourceClient lists and watches gvr in namespace.
func (e *Exporter) resourceClient(gvr schema.GroupVersionResource, namespace string) resourceClient {
	if e.clientFor != nil {
		return e.clientFor(gvr, namespace)
	}
	rc := e.client.Resource(gvr).Namespace(namespace)
	if e.watcher != nil {
		return &fastWatchClient{resourceClient: rc, w: e.watcher, gvr: gvr, namespace: namespace}
	}
	return rc
}

// sentinelPrefix marks store keys that only record that a sink's
// checkpoint covers a scope (so a restart knows the scope even when it held
// no objects).
const sentinelPrefix = "\x00scope\x00"

func sentinelKey(id scopeID) state.Key {
	return state.Key{GVR: id.GVR, Namespace: id.Namespace, Name: sentinelPrefix + id.String()}
}

func isSentinel(k state.Key) bool { return strings.HasPrefix(k.Name, sentinelPrefix) }

// Run watches, delivers and blocks until ctx ends; then it stops the
// informers, drains the queues (bounded by the config's shutdownTimeout,
// or at once when SendContext ends) and closes the sinks. Every path out,
// errors included, stops what was started.
func (e *Exporter) Run(ctx context.Context) (err error) {
	defer close(e.stopped)
	// A standby's deadline stays zero until it leads: it has no sinks to
	// close.
	var deadline time.Time
	leading := e.leads == nil
	defer func() {
		if !leading {
			return
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(e.cfg.ShutdownTimeout.Duration)
		}
		if cerr := e.closeSinks(deadline); err == nil {
			err = cerr
		}
	}()
	defer e.stopScopes()
	defer e.namespaces.stop()
	defer e.enrich.stop()

	var pending []*plan.Rule
	for _, r := range e.rules {
		if err := e.addRule(r, false); err != nil {
			e.log.Warn("resource not available yet; retrying", zap.Int("rule", r.Index), zap.String("resource", r.Config.Resource), zap.Error(err))
			pending = append(pending, r)
		}
	}
	if leading {
		e.restore()
	}
	if len(pending) == 0 {
		e.parked.done()
	}
	e.namespaces.start()
	if leading {
		e.forgetParked()
	}
	e.mu.Lock()
	current := make([]*scope, 0, len(e.scopes))
	for _, s := range e.scopes {
		current = append(current, s)
	}
	e.mu.Unlock()
	for _, s := range current {
		if err := s.start(e.scopeSynced); err != nil {
			return err
		}
	}
	e.started.Store(true)
	e.log.Info("informers started", zap.Int("scopes", len(current)), zap.Int("pending rules", len(pending)))

	// The loops run while standing by too: late resources are watched,
	// stalled watches restarted, tombstones pruned.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return e.resolveLoop(gctx, pending) })
	g.Go(func() error { return e.pruneLoop(gctx) })
	g.Go(func() error { return e.watchdog(gctx) })
	if !leading {
		g.Go(func() error { return e.shareLoop(gctx) })
		e.announce()
		var l leadership
		select {
		case l = <-e.leads:
		case <-gctx.Done():
			e.refuseLead()
			e.log.Info("standby stopped")
			return g.Wait()
		}
		defer context.AfterFunc(l.ctx, stopRun)()
		e.sends = l.sendCtx
		leading = true
		e.promote(l.sinks)
	}
	if e.sends == nil {
		e.sends = context.WithoutCancel(ctx)
	}
	sendCtx, cancelSend := context.WithCancel(e.sends)
	defer cancelSend()
	e.sendStartGaps()
	e.announce()

	var workers sync.WaitGroup
	for _, r := range e.runners {
		workers.Add(1)
		go func() { defer workers.Done(); r.run(sendCtx, e.cfg.Workers) }()
	}
	<-gctx.Done()
	loopErr := g.Wait()

	e.log.Info("shutting down: draining queues", zap.Duration("timeout", e.cfg.ShutdownTimeout.Duration))
	// shutdownTimeout bounds the whole shutdown: the drain and the closing
	// of the sinks share it (the chart's grace period adds 15s to it).
	deadline = time.Now().Add(e.cfg.ShutdownTimeout.Duration)
	e.stopScopes()
	e.namespaces.stop()
	// The drain gets the shutdown timeout less a share for closing sinks.
	e.drain(sendCtx, cancelSend, e.cfg.ShutdownTimeout.Duration*4/5)
	workers.Wait()
	return loopErr
}

// drain lets the workers finish the queued keys, bounded by the shutdown
// timeout or an abort.
func (e *Exporter) drain(sendCtx context.Context, cancelSend func(), timeout time.Duration) {
	drained := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, r := range e.runners {
			wg.Add(1)
			go func() { defer wg.Done(); r.queue.ShutDownWithDrain() }()
		}
		wg.Wait()
		close(drained)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-drained:
		return
	case <-timer.C:
		e.log.Warn("queues not drained in time; undelivered keys stay for the next start")
	case <-sendCtx.Done():
		e.log.Warn("sends aborted; undelivered keys stay for the next start")
	}
	cancelSend()
	for _, r := range e.runners {
		r.queue.ShutDown()
	}
}

func (e *Exporter) closeSinks(deadline time.Time) error {
	// Closing flushes what sinks buffered: it gets what is left of the
	// shutdown timeout, and at least two seconds.
	if time.Until(deadline) < 2*time.Second {
		deadline = time.Now().Add(2 * time.Second)
	}
	// Under the send context: aborted (the Lease was lost), acks still
	// outstanding are not waited for; the sinks fail them at once.
	ctx, cancel := context.WithDeadline(e.sends, deadline)
	defer cancel()
	var first error
	for _, r := range e.runners {
		if err := r.sink.Close(ctx); err != nil {
			e.log.Error("closing sink", zap.String("sink", r.name), zap.Error(err))
			if first == nil {
				first = fmt.Errorf("close sink %s: %w", r.name, err)
			}
		}
	}
	// A closed sink has called back every send it held; what remains is a
	// checkpoint group commit finishing. Nothing may touch a store after
	// Run returned (the caller closes the checkpoint).
	for _, r := range e.runners {
		if !r.waitSettled(e.cfg.ShutdownTimeout.Duration) {
			e.log.Error("sends still unsettled after close", zap.String("sink", r.name))
		}
	}
	return first
}

func (e *Exporter) stopScopes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		s.stopInformer()
	}
}
