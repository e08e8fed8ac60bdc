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
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options configure an Exporter. Config, Client, Resolver and Sinks are
// required.
type Options struct {
	Config   *config.Config
	Client   dynamic.Interface
	Resolver Resolver
	// Sinks by config name; every sink of the config must be present.
	Sinks map[string]sinks.Sink
	// Stores holds the delivered state per sink; missing ones are in memory.
	Stores map[string]Store
	// Logger; nil means no logging.
	Logger *zap.Logger
	// ResolveRetry is how often unresolved resources are looked up again
	// (default 10s).
	ResolveRetry time.Duration
	// Now is the clock for event times (default time.Now).
	Now func() time.Time
	// Registerer receives the Prometheus metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// allowNoClient lets in-process benchmarks build an exporter without an
	// API server.
	allowNoClient bool
	// StartGap, when set, sends a gap marker with this reason for every
	// scope at start (a lost checkpoint: GapCheckpointLost).
	StartGap string
}

// Exporter is the running pipeline.
type Exporter struct {
	cfg      *config.Config
	client   dynamic.Interface
	resolver Resolver
	log      *zap.Logger
	now      func() time.Time
	retry    time.Duration
	startGap string
	relists  atomic.Int64
	stalls   atomic.Int64
	metrics  *metrics

	rules      []*rule
	runners    []*sinkRunner
	byName     map[string]*sinkRunner
	tombstones *tombstones

	mu         sync.Mutex
	scopes     map[scopeID]*scope
	namespaces *namespaceWatches
	ready      atomic.Bool
}

// New checks the options and builds the pipeline; Run starts it.
func New(o Options) (*Exporter, error) {
	if o.Config == nil || (!o.allowNoClient && (o.Client == nil || o.Resolver == nil)) {
		return nil, fmt.Errorf("exporter: config, client and resolver are required")
	}
	e := &Exporter{
		cfg: o.Config, client: o.Client, resolver: o.Resolver, log: o.Logger, now: o.Now, retry: o.ResolveRetry, startGap: o.StartGap,
		byName: map[string]*sinkRunner{}, scopes: map[scopeID]*scope{}, tombstones: &tombstones{m: map[Key]tombstone{}},
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	e.namespaces = newNamespaceWatches(e)
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e.metrics = newMetrics(reg, e)
	if e.now == nil {
		e.now = time.Now
	}
	if e.retry == 0 {
		e.retry = 10 * time.Second
	}
	for _, sc := range o.Config.Sinks {
		s, ok := o.Sinks[sc.Name]
		if !ok {
			return nil, fmt.Errorf("exporter: no sink given for %q", sc.Name)
		}
		st := o.Stores[sc.Name]
		if st == nil {
			st = NewMemoryStore()
		}
		r := newSinkRunner(e, sc.Name, s, st)
		e.runners = append(e.runners, r)
		e.byName[sc.Name] = r
	}
	rules, err := compileRules(o.Config)
	if err != nil {
		return nil, err
	}
	e.rules = rules
	return e, nil
}

// sentinelPrefix marks store keys that only record that a sink's
// checkpoint covers a scope (so a restart knows the scope even when it held
// no objects).
const sentinelPrefix = "\x00scope\x00"

func sentinelKey(id scopeID) Key {
	return Key{GVR: id.GVR, Namespace: id.Namespace, Name: sentinelPrefix + id.String()}
}

func isSentinel(k Key) bool { return strings.HasPrefix(k.Name, sentinelPrefix) }

// Flusher is implemented by stores that write behind (checkpoints): Flush
// writes now, and returns when ctx ends at the latest.
type Flusher interface {
	Flush(ctx context.Context) error
}

// markScopes records every current scope in each sink's store and flushes
// checkpoints at once, so that even a kubefeed killed a moment after start
// is restarted as a restart, not as a first run.
func (e *Exporter) markScopes(ctx context.Context) {
	for _, r := range e.runners {
		for _, s := range r.scopeList() {
			if _, ok := r.store.Get(sentinelKey(s.id)); !ok {
				r.store.Put(sentinelKey(s.id), Record{Scope: s.name})
			}
		}
		if f, ok := r.store.(Flusher); ok {
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := f.Flush(fctx)
			cancel()
			if err != nil {
				e.log.Error("checkpoint flush at start", zap.String("sink", r.name), zap.Error(err))
			}
		}
	}
}

// Relists counts lists after the first (watch expiry, API server restart).
func (e *Exporter) Relists() int64 { return e.relists.Load() }

// restore prepares the scopes whose sinks restored a checkpoint: their
// initial list is compared with it (nothing is skipped), their changes are
// recovered, after a gap marker; records of scopes no longer configured are
// forgotten. The returned func, called once caches synced, queues every
// restored key, so deletions made while kubefeed was down are found.
func (e *Exporter) restore() func() {
	now := e.now()
	var later []func()
	for _, r := range e.runners {
		rs, ok := r.store.(Restorer)
		if !ok {
			continue
		}
		at, ok := rs.Restored()
		if !ok {
			continue
		}
		current := map[string]*scope{}
		for _, s := range r.scopeList() {
			current[s.name] = s
		}
		known := map[string]bool{}
		forgotten := 0
		r.store.Range(func(k Key, rec Record) bool {
			if current[rec.Scope] == nil {
				r.store.Delete(k)
				forgotten++
			} else {
				known[rec.Scope] = true
			}
			return true
		})
		gaps := map[string]*gap{}
		for id, s := range current {
			if !known[id] {
				continue
			}
			g := newGap(e.cfg.Cluster, s.id, at, now, GapRestart)
			gaps[id] = g
			for _, rt := range s.routes {
				if rt.sink == r {
					rt.restoreGap, rt.skipInitial = g, false
				}
			}
		}
		e.log.Info("checkpoint restored", zap.String("sink", r.name), zap.Time("saved", at), zap.Int("scopes", len(gaps)), zap.Int("forgotten (left the scope)", forgotten))
		later = append(later, func() {
			r.store.Range(func(k Key, rec Record) bool {
				if g := gaps[rec.Scope]; g != nil && !isSentinel(k) {
					r.markRecovered(k, g)
					r.enqueue(k)
				}
				return true
			})
		})
	}
	return func() {
		for _, f := range later {
			f()
		}
		if e.startGap == "" {
			return
		}
		for _, r := range e.runners {
			for _, s := range r.scopeList() {
				r.sendGapNow(newGap(e.cfg.Cluster, s.id, time.Time{}, now, e.startGap))
			}
		}
	}
}

// Ready reports whether the first caches synced and events flow.
func (e *Exporter) Ready() bool { return e.ready.Load() }

// Scopes lists the informers' scopes (one per distinct scope).
func (e *Exporter) Scopes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.scopes))
	for id := range e.scopes {
		out = append(out, id.String())
	}
	return out
}

// Stats returns per-sink counters.
func (e *Exporter) Stats() map[string]SinkStats {
	out := map[string]SinkStats{}
	for _, r := range e.runners {
		out[r.name] = r.stats()
	}
	return out
}

// Run watches, delivers and blocks until ctx ends; then it stops the
// informers, drains the queues (bounded by the config's shutdownTimeout) and
// closes the sinks.
func (e *Exporter) Run(ctx context.Context) error {
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()

	var pending []*rule
	var started []*scope
	for _, r := range e.rules {
		ss, err := e.addRule(r)
		if err != nil {
			e.log.Warn("resource not available yet; retrying", zap.Int("rule", r.index), zap.String("resource", r.cfg.Resource), zap.Error(err))
			pending = append(pending, r)
			continue
		}
		started = append(started, ss...)
	}
	// Namespace selectors: their namespaces' scopes join the first sync.
	if !e.namespaces.start(ctx) {
		e.stopScopes()
		return e.closeSinks()
	}
	afterSync := e.restore()
	e.mu.Lock()
	started = started[:0]
	for _, s := range e.scopes {
		started = append(started, s)
	}
	e.mu.Unlock()
	for _, s := range started {
		if err := s.start(); err != nil {
			return err
		}
	}
	synced := make([]cache.InformerSynced, 0, len(started))
	for _, s := range started {
		synced = append(synced, s.informer.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		e.stopScopes()
		return e.closeSinks()
	}
	afterSync()
	e.markScopes(ctx)
	e.ready.Store(true)
	e.log.Info("caches synced; delivering", zap.Int("scopes", len(started)), zap.Int("pending rules", len(pending)))

	var workers sync.WaitGroup
	for _, r := range e.runners {
		r.run(sendCtx, e.cfg.Workers, &workers)
	}
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); e.resolveLoop(ctx, pending) }()
	go func() { defer bg.Done(); e.pruneLoop(ctx) }()
	go func() { defer bg.Done(); e.watchdog(ctx) }()

	<-ctx.Done()
	e.log.Info("shutting down: draining queues", zap.Duration("timeout", e.cfg.ShutdownTimeout.Duration))
	e.stopScopes()
	e.namespaces.stop()
	bg.Wait()
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
	select {
	case <-drained:
	case <-time.After(e.cfg.ShutdownTimeout.Duration):
		e.log.Warn("queues not drained in time; undelivered keys stay for the next start")
		cancelSend()
		for _, r := range e.runners {
			r.queue.ShutDown()
		}
	}
	workers.Wait()
	return e.closeSinks()
}

func (e *Exporter) closeSinks() error {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout.Duration)
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
	return first
}

func (e *Exporter) stopScopes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
	}
}

// addRule resolves a rule's resource and joins or creates its scopes. It
// returns the scopes it created, not yet started. Rules with a namespace
// selector get their scopes from the namespace watch instead.
func (e *Exporter) addRule(r *rule) ([]*scope, error) {
	res, err := e.resolver.Resolve(r.cfg.Resource)
	if err != nil {
		return nil, err
	}
	if r.cfg.NamespaceSelector != "" && res.Namespaced {
		return nil, e.namespaces.add(r, res)
	}
	ids, err := scopeIDs(r.cfg, res)
	if err != nil {
		return nil, err
	}
	return e.joinScopes(r, res, ids), nil
}

// joinScopes adds a rule to scopes, creating the missing ones (not started).
func (e *Exporter) joinScopes(r *rule, res Resource, ids []scopeID) []*scope {
	e.mu.Lock()
	defer e.mu.Unlock()
	var created []*scope
	for _, id := range ids {
		s, ok := e.scopes[id]
		if !ok {
			s = newScope(e, id, res, e.client)
			e.scopes[id] = s
			created = append(created, s)
		}
		s.rules = append(s.rules, r)
		for _, name := range r.sinks {
			sr := e.byName[name]
			s.addRoute(sr, !r.emitInitial)
			sr.addScope(s)
		}
	}
	return created
}

// leaveScopes removes a rule from scopes; a scope no rule needs any more is
// stopped, and what its sinks had delivered from it is forgotten (leaving
// the scope is not a deletion).
func (e *Exporter) leaveScopes(r *rule, ids []scopeID) {
	e.mu.Lock()
	var stopped []*scope
	for _, id := range ids {
		s, ok := e.scopes[id]
		if !ok {
			continue
		}
		kept := s.rules[:0]
		for _, x := range s.rules {
			if x != r {
				kept = append(kept, x)
			}
		}
		s.rules = kept
		if len(kept) == 0 {
			delete(e.scopes, id)
			close(s.stop)
			stopped = append(stopped, s)
		}
	}
	e.mu.Unlock()
	for _, s := range stopped {
		for _, rt := range s.routes {
			rt.sink.removeScope(s)
		}
		s.log.Info("scope stopped")
	}
}

// resolveLoop retries rules whose resource did not exist yet (a CRD created
// after start), and starts their informers once it does.
func (e *Exporter) resolveLoop(ctx context.Context, pending []*rule) {
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.retry):
		}
		e.resolver.Reset()
		var still []*rule
		for _, r := range pending {
			ss, err := e.addRule(r)
			if err != nil {
				e.log.Debug("resource still not available", zap.String("resource", r.cfg.Resource), zap.Error(err))
				still = append(still, r)
				continue
			}
			e.log.Info("resource appeared; watching", zap.Int("rule", r.index), zap.String("resource", r.cfg.Resource))
			for _, s := range ss {
				if err := s.start(); err != nil {
					e.log.Error("start informer", zap.Error(err))
				}
			}
		}
		pending = still
	}
}

// watchdog restarts watches that made no progress for cfg.WatchTimeout.
// The API server sends bookmarks about every minute, so a healthy watch
// on an idle resource still makes progress.
func (e *Exporter) watchdog(ctx context.Context) {
	timeout := e.cfg.WatchTimeout.Duration
	t := time.NewTicker(max(timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.mu.Lock()
			scopes := make([]*scope, 0, len(e.scopes))
			for _, s := range e.scopes {
				scopes = append(scopes, s)
			}
			e.mu.Unlock()
			for _, s := range scopes {
				if s.restartStalledWatch(timeout) {
					e.stalls.Add(1)
					e.metrics.stalled.WithLabelValues(resourceLabel(s.res)).Inc()
				}
			}
		}
	}
}

// Stalls counts watches restarted by the watchdog.
func (e *Exporter) Stalls() int64 { return e.stalls.Load() }

// Healthy reports readiness beyond the first sync: every informer synced.
func (e *Exporter) Healthy() (bool, string) {
	if !e.Ready() {
		return false, "caches not synced"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		if !s.informer.HasSynced() {
			return false, "scope " + s.name + " not synced"
		}
	}
	return true, ""
}

func (e *Exporter) pruneLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	stores := make([]Store, 0, len(e.runners))
	for _, r := range e.runners {
		stores = append(stores, r.store)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.tombstones.prune(stores)
		}
	}
}
