package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	clientretry "k8s.io/client-go/util/retry"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/checkpoint"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// Sharding (config sharding.shards: N). The uid hash space is split in N
// ranges; shard I has its own Lease (<leaderElection.name>-shard-I), its
// own checkpoint (the sink's records under "<sink>.shard-I-of-N") and,
// while this replica holds it, its own pipeline: an Exporter whose lists
// and watches carry the shard's selector. The replicas register in the
// members Lease and each computes the same assignment from the live
// members (assign); a replica runs an elector for every shard assigned to
// it, and stops (drains, flushes the shard's checkpoint, releases the
// Lease) every shard it holds that is assigned to another. The new owner
// takes the Lease once released, or once it expired when the old owner
// died, and starts from the shard's checkpoint after a restart gap
// marker. A uid never changes shard, so per-object order holds across the
// handoff.

// shardSet runs the shards of one replica.
type shardSet struct {
	n        int
	members  *members
	lo       leadOptions
	pipeline func(sp *shard.Span) leaderPipeline
	log      *zap.Logger
	held     prometheus.Gauge

	mu          sync.Mutex
	running     map[int]*shardRun
	asideLogged bool
	failed      chan error // a shard's lead failed: the replica stops
}

// shardRun is one shard's elector (and pipeline while it leads).
type shardRun struct {
	stop    context.CancelFunc
	done    chan struct{}
	leading func() bool
	// stopping: handed over, still draining; the shard is not started
	// again before it is done (the same identity would hold the Lease
	// twice).
	stopping bool
}

// run keeps the replica's shards matched with the assignment until ctx
// ends; then it stops every shard (each drains and releases its Lease)
// and leaves the members registry.
func (ss *shardSet) run(ctx context.Context) error {
	ss.mu.Lock()
	ss.running = map[int]*shardRun{}
	ss.mu.Unlock()
	ss.failed = make(chan error, ss.n)
	ss.members.runs, ss.members.draining = ss.runs, ss.drainingShards
	ss.members.layout = ss.n
	retry := ss.lo.Election.RetryPeriod.Duration
	t := time.NewTicker(retry)
	defer t.Stop()
	var err error
	beats := 0
loop:
	for {
		// Every replica writes the one registry Lease each retryPeriod: a
		// conflict is read again and retried at once (with jitter), or a
		// replica that keeps losing the race would stop counting as live.
		live, berr := ss.members.beatRetrying(ctx)
		switch {
		case berr != nil && ctx.Err() == nil:
			ss.log.Warn("members registry", zap.Error(berr))
		case berr == nil:
			beats++
			// The first beats let replicas started together see each
			// other before any takes a shard.
			if beats > 2 {
				ss.balance(ctx, live)
			}
		}
		select {
		case <-ctx.Done():
			break loop
		case err = <-ss.failed:
			break loop
		case <-t.C:
		}
	}
	ss.stopAll()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// The others beat the registry every retryPeriod too: a conflict is
	// likely, and an entry left behind counts as live for leaseDuration,
	// holding back the shards just released.
	if lerr := clientretry.OnError(clientretry.DefaultBackoff, apierrors.IsConflict, func() error {
		_, err := ss.members.beat(lctx, true)
		return err
	}); lerr != nil {
		ss.log.Warn("leaving the members registry", zap.Error(lerr))
	}
	if err == nil {
		select {
		case err = <-ss.failed:
		default:
		}
	}
	return err
}

// balance starts the electors of the shards assigned to this replica and
// stops those of the others. The shards each live replica runs, as the
// last beat read them, stay where they are unless the balance needs them
// elsewhere (rebalance).
func (ss *shardSet) balance(ctx context.Context, live []string) {
	me := ss.lo.Identity
	ss.mu.Lock()
	defer ss.mu.Unlock()
	running := ss.members.running
	// Replicas of another sharding.shards (a rollout that changes it)
	// cover other ranges under the same Lease names: one count runs the
	// feed at a time (layoutFor), and it starts no shard while a replica
	// of another still runs one.
	active, othersRun := layoutFor(live, ss.members.layouts, running, ss.n)
	othersRun = othersRun || othersDrain(live, ss.members.layouts, ss.members.drains, ss.n)
	if active != ss.n {
		ss.standAside(active)
		return
	}
	ss.asideLogged = false
	live = slices.DeleteFunc(slices.Clone(live), func(id string) bool {
		l := ss.members.layouts[id]
		return l != 0 && l != ss.n
	})
	if !contains(live, me) {
		live = append(live, me)
		sort.Strings(live)
		running = maps.Clone(running)
		if running == nil {
			running = map[string][]int{}
		}
		running[me] = ss.assigned()
	}
	owners := rebalance(live, running, ss.n)
	var took, gave []int
	for i, owner := range owners {
		r := ss.running[i]
		switch {
		case owner == me && r == nil && othersRun:
			// Started once the other count's replicas run nothing.
		case owner == me && r == nil:
			ss.running[i] = ss.start(ctx, i)
			took = append(took, i)
		case owner != me && r != nil && !r.stopping:
			ss.handOver(i, r)
			gave = append(gave, i)
		}
	}
	if len(took)+len(gave) > 0 {
		ss.log.Info("shards rebalanced", zap.Int("replicas", len(live)), zap.Ints("taking", took), zap.Ints("handing over", gave), zap.Ints("assigned", ss.assigned()))
	}
}

// layoutFor is the shard count that runs the feed among live replicas
// whose entries name theirs in layouts: the count most of them run with,
// the larger on a tie, so that a rollout that changes it moves the feed
// once half the replicas run the new one, and a rollback moves it back.
// Every replica computes it alike from the same entries: an entry that
// names no count does not vote, and a pod counts once (identities are
// host_nanos: a restarted container's dead entry is not a second vote).
// Without votes, mine. othersRun reports whether a replica of another
// count still runs (or drains) a shard.
func layoutFor(live []string, layouts map[string]int, running map[string][]int, mine int) (active int, othersRun bool) {
	newest := map[string]string{} // host → its newest identity
	for _, id := range live {
		host, nanos := splitIdentity(id)
		if cur, ok := newest[host]; !ok || nanosOf(cur) < nanos {
			newest[host] = id
		}
		if l := layouts[id]; l != 0 && l != mine && len(running[id]) > 0 {
			othersRun = true
		}
	}
	count := map[int]int{}
	for _, id := range newest {
		if l := layouts[id]; l != 0 {
			count[l]++
		}
	}
	active = mine
	best := -1
	for l, c := range count {
		if c > best || (c == best && l > active) {
			active, best = l, c
		}
	}
	return active, othersRun
}

// splitIdentity splits host_nanos (lead.go's identities).
func splitIdentity(id string) (host string, nanos int64) {
	i := strings.LastIndexByte(id, '_')
	if i < 0 {
		return id, 0
	}
	n, _ := strconv.ParseInt(id[i+1:], 10, 64)
	return id[:i], n
}

func nanosOf(id string) int64 { _, n := splitIdentity(id); return n }

// handOver stops shard i (it drains, flushes and releases its Lease) and
// forgets it once it is done; ss.mu is held.
func (ss *shardSet) handOver(i int, r *shardRun) {
	r.stopping = true
	r.stop()
	go func() {
		<-r.done
		ss.mu.Lock()
		if ss.running[i] == r {
			delete(ss.running, i)
		}
		ss.mu.Unlock()
	}()
}

// standAside stops every shard of this replica, whose shard count is not
// the one running the feed; ss.mu is held.
func (ss *shardSet) standAside(active int) {
	var gave []int
	for i, r := range ss.running {
		if !r.stopping {
			ss.handOver(i, r)
			gave = append(gave, i)
		}
	}
	if len(gave) > 0 || !ss.asideLogged {
		ss.log.Info("standing aside: replicas with another sharding.shards run the feed", zap.Int("theirs", active), zap.Int("mine", ss.n), zap.Ints("handing over", gave))
	}
	ss.asideLogged = true
}

// runs is what this replica's registry entry says it runs: the shards
// assigned to it and not being handed over (rebalance keeps them here).
func (ss *shardSet) runs() []int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.assigned()
}

// drainingShards lists the shards this replica stops and that have not
// returned yet (their pipelines may still deliver).
func (ss *shardSet) drainingShards() []int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []int
	for i, r := range ss.running {
		if r.stopping {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// othersDrain reports whether a live replica of another shard count still
// drains a shard.
func othersDrain(live []string, layouts map[string]int, drains map[string][]int, mine int) bool {
	for _, id := range live {
		if l := layouts[id]; l != 0 && l != mine && len(drains[id]) > 0 {
			return true
		}
	}
	return false
}

// assigned lists the shards assigned to this replica; ss.mu is held.
func (ss *shardSet) assigned() []int {
	var out []int
	for i, r := range ss.running {
		if !r.stopping {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// start runs shard i's elector: it takes the Lease when free and runs the
// shard's pipeline while it holds it.
func (ss *shardSet) start(ctx context.Context, i int) *shardRun {
	sp := shard.Of(i, ss.n)
	sctx, stop := context.WithCancel(ctx)
	o := ss.lo
	o.Election.Name = shardLeaseName(ss.lo.Election.Name, i)
	o.Log = ss.log.With(zap.Stringer("shard", sp))
	var mu sync.Mutex
	leading := false
	pipeline := ss.pipeline(sp)
	r := &shardRun{stop: stop, done: make(chan struct{}), leading: func() bool { mu.Lock(); defer mu.Unlock(); return leading }}
	go func() {
		defer close(r.done)
		err := lead(sctx, o, func(pctx, sendCtx context.Context) error {
			mu.Lock()
			leading = true
			mu.Unlock()
			ss.held.Inc()
			defer ss.held.Dec()
			defer func() { mu.Lock(); leading = false; mu.Unlock() }()
			err := pipeline(pctx, sendCtx)
			if err != nil && pctx.Err() != nil && errors.Is(err, context.Canceled) {
				// Stopped (handed over, SIGTERM) while it started: a
				// start cut short, not a failure of the replica. A lost
				// Lease is reported by lead all the same.
				return nil
			}
			return err
		})
		if err != nil {
			ss.failed <- fmt.Errorf("%s: %w", sp, err)
		}
	}()
	return r
}

// stopAll stops every shard and waits until each drained and released
// its Lease.
func (ss *shardSet) stopAll() {
	ss.mu.Lock()
	runs := ss.running
	ss.running = map[int]*shardRun{}
	ss.mu.Unlock()
	for _, r := range runs {
		r.stop()
	}
	for _, r := range runs {
		<-r.done
	}
}

// leading lists the shards this replica runs a pipeline for.
func (ss *shardSet) leading() []int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []int
	for i, r := range ss.running {
		if r.leading() {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

func shardLeaseName(name string, i int) string { return name + "-shard-" + strconv.Itoa(i) }

func membersLeaseName(name string) string { return name + "-members" }

// shardStore is the checkpoint name of a sink's records of one shard.
func shardStore(sink string, sp *shard.Span) string { return sink + "." + sp.String() }

// seedShardStores gives each sink's store of shard sp (nil: the unsharded
// store) whose records are older than another layout's (never flushed, or
// flushed before another layout was: a rollback) the records of the
// layout that wrote the bucket last:
// the unsharded store (sharding turned on) or the stores of another shard
// count (it changed), whichever was flushed last, for the uids in sp. The
// shard then starts as after a restart of that layout, its list compared
// with the records and what changed meanwhile recovered after a restart
// gap marker, instead of as on a first run, whose initialList: skip would
// take what changed during the switch as its baseline and send nothing of
// it. The bucket is only read here (a Follower that never leads); the
// records are written under the shard's name at its next flush.
func seedShardStores(ctx context.Context, kv *checkpoint.KV, sp *shard.Span, stores map[string]state.Store, log *zap.Logger) error {
	// earlier maps each store that may hold records of sp's uids to its
	// sink and layout (0: unsharded, else the shard count).
	type source struct {
		sink   string
		layout int
	}
	earlier := map[string]source{}
	// seed: the sinks whose store is seeded, with the time their own
	// checkpoint was flushed (zero: never, a fresh one). A store flushed
	// before is seeded again when another layout flushed after it (a
	// rollback): its records are older than what that layout delivered.
	seed := map[string]time.Time{}
	for sink, st := range stores {
		r, ok := st.(state.Restorer)
		if !ok {
			continue
		}
		own, _ := r.Restored()
		// The flush times of the unsharded store and of every shard store,
		// read with one listing: only the layouts that ever ran are read.
		flushed, err := kv.FlushTimes(ctx, sink)
		if err != nil {
			return fmt.Errorf("%s: reading the checkpoints of other layouts: %w", spanName(sp), err)
		}
		if t, ok, err := kv.Flushed(ctx, sink); err != nil {
			return fmt.Errorf("%s: reading the checkpoints of other layouts: %w", spanName(sp), err)
		} else if ok && sp != nil {
			flushed[sink] = t // the unsharded store, unless it is the one seeded
		}
		srcs := map[string]source{}
		later := false
		for name, t := range flushed {
			layout := 0
			if name != sink {
				i, n, ok := parseShardStore(sink, name)
				if !ok || (sp != nil && n == sp.N) {
					continue
				}
				if lo, hi := shard.Range(i, n); sp != nil && !spanOverlaps(sp, lo, hi) {
					continue
				}
				layout = n
			}
			srcs[name] = source{sink: sink, layout: layout}
			if t.After(own) {
				later = true
			}
		}
		if !later {
			continue // no other layout flushed after this store: a restart, or a first run
		}
		seed[sink] = own
		maps.Copy(earlier, srcs)
	}
	if len(seed) == 0 {
		return nil
	}
	names := slices.Collect(maps.Keys(earlier))
	f := kv.Follow(names)
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(fctx) }()
	for {
		if ok, _ := f.Following(); ok {
			break
		}
		if fctx.Err() != nil {
			cancel()
			<-done
			_, why := f.Following()
			return fmt.Errorf("%s: reading the checkpoints of the layout before: %s", spanName(sp), why)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for sink, own := range seed {
		layout, at := -1, time.Time{}
		for name, src := range earlier {
			if t, ok := f.Store(name).Restored(); ok && src.sink == sink && t.After(at) {
				layout, at = src.layout, t
			}
		}
		if layout < 0 {
			continue // a first run indeed
		}
		dst, ok := stores[sink].(*checkpoint.Store)
		if !ok || !at.After(own) {
			continue
		}
		if !own.IsZero() {
			// Rolled back: what this layout recorded before is older than
			// what the other delivered since (and its deletions).
			var stale []state.Key
			dst.Range(func(k state.Key, _ state.Record) bool { stale = append(stale, k); return true })
			for _, k := range stale {
				dst.Delete(k)
			}
		}
		n := 0
		for name, src := range earlier {
			if src.sink != sink || src.layout != layout {
				continue
			}
			f.Store(name).Range(func(k state.Key, r state.Record) bool {
				if sp == nil || sp.Has(r.UID) {
					dst.Put(k, r)
					n++
				}
				return true
			})
		}
		// Restored as of that layout's flush: the store itself says so (a
		// warm standby's Exporter holds it already), and so does the
		// wrapper handed on.
		dst.RestoredAs(at)
		stores[sink] = &seededStore{Store: dst, at: at}
		from := "the unsharded feed"
		if layout > 0 {
			from = fmt.Sprintf("%d shards", layout)
		}
		what := "shard checkpoint started from the layout before"
		if sp == nil {
			what = "unsharded checkpoint started from the shards' layout"
		}
		log.Info(what, zap.String("sink", sink), zap.String("shard", spanName(sp)),
			zap.String("from", from), zap.Time("saved", at), zap.Int("records", n))
	}
	return nil
}

// spanName is sp as logs and errors name it; nil is the unsharded feed.
func spanName(sp *shard.Span) string {
	if sp == nil {
		return "unsharded"
	}
	return sp.String()
}

// parseShardStore reads shard i of n from the name of sink's store of it
// (shardStore).
func parseShardStore(sink, name string) (i, n int, ok bool) {
	rest, ok := strings.CutPrefix(name, sink+".shard-")
	if !ok {
		return 0, 0, false
	}
	is, ns, ok := strings.Cut(rest, "-of-")
	if !ok {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || n < 1 || n > config.MaxShards || i < 0 || i >= n {
		return 0, 0, false
	}
	return i, n, true
}

// spanOverlaps reports whether sp and [lo, hi) share a hash (a hi of 0
// stands for 2^64, as shard.Range gives it).
func spanOverlaps(sp *shard.Span, lo, hi uint64) bool {
	slo, shi := shard.Range(sp.I, sp.N)
	below := func(x, end uint64) bool { return end == 0 || x < end }
	return below(lo, shi) && below(slo, hi)
}

// seededStore is a shard's checkpoint store that started from the records
// of an earlier layout: it reports that layout's last flush as its own,
// so that the exporter restores from it (compare, recover, gap marker).
type seededStore struct {
	*checkpoint.Store
	at time.Time
}

func (s *seededStore) Restored() (time.Time, bool) { return s.at, true }

// shardExporters tracks the running Exporter of each shard, for /readyz.
type shardExporters struct {
	mu sync.Mutex
	m  map[int]*exporter.Exporter
}

func (s *shardExporters) set(i int, ex *exporter.Exporter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[int]*exporter.Exporter{}
	}
	if ex == nil {
		delete(s.m, i)
	} else {
		s.m[i] = ex
	}
}

// health is ready while every shard held is; it names the shards.
func (s *shardExporters) health() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	for i := range s.m {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	names := make([]string, len(ids))
	for j, i := range ids {
		if ok, why := s.m[i].Healthy(); !ok {
			return false, fmt.Sprintf("shard %d: %s", i, why)
		}
		names[j] = strconv.Itoa(i)
	}
	if len(ids) == 0 {
		return true, "sharded: holding no shard"
	}
	return true, "sharded: holding shards " + strings.Join(names, ",")
}

// probeShardSelector reports whether the API server applies shardSelector
// (ShardedListAndWatch): a one-item list of the config's first resource
// with shard 0 of 2's selector echoes metadata.shardInfo when it does.
func probeShardSelector(ctx context.Context, rc *rest.Config, cfg *config.Config, opts exporter.Options) (bool, error) {
	if len(cfg.Watch) == 0 {
		return false, errors.New("no rule to probe with")
	}
	w := cfg.Watch[0]
	res, err := opts.Resolver.Resolve(w.Resource)
	if err != nil {
		return false, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return false, err
	}
	ns := ""
	if res.Namespaced && len(w.Namespaces) > 0 {
		ns = w.Namespaces[0]
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := dyn.Resource(res.GVR).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1, ShardSelector: shard.Of(0, 2).Selector()})
	if err != nil {
		return false, err
	}
	md, _ := l.Object["metadata"].(map[string]any)
	_, ok := md["shardInfo"]
	return ok, nil
}

// runShards runs this replica's part of a sharded feed until ctx ends.
func runShards(ctx context.Context, rc *rest.Config, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry, lo leadOptions, exps *shardExporters) error {
	n := cfg.Sharding.Shards
	held := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubefeed_shards_held", Help: "Shards whose pipeline this replica runs (sharding)."})
	serverSide := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubefeed_shard_server_side",
		Help: "1 when the API server applies shardSelector (ShardedListAndWatch): each replica lists and watches only its shards; 0 when kubefeed filters client-side, with the full watch cost."})
	reg.MustRegister(held, serverSide)
	opts, err := pipelineOptions(rc, cfg, log, reg)
	if err != nil {
		return runtimeErr(err)
	}
	if on, err := probeShardSelector(ctx, rc, cfg, opts); err != nil {
		log.Warn("could not tell whether the API server applies shardSelector; every shard filters client-side too", zap.Error(err))
	} else if on {
		serverSide.Set(1)
		log.Info("sharding server-side: the API server applies shardSelector (ShardedListAndWatch)", zap.Int("shards", n))
	} else {
		log.Info("sharding client-side: the API server ignores shardSelector; each shard watches everything and keeps its own", zap.Int("shards", n))
	}
	ss := &shardSet{
		n: n, lo: lo, log: log, held: held,
		members: &members{client: lo.Client, namespace: lo.Election.Namespace, name: membersLeaseName(lo.Election.Name), identity: lo.Identity,
			live: lo.Election.LeaseDuration.Duration, now: time.Now},
		pipeline: func(sp *shard.Span) leaderPipeline {
			slog := log.With(zap.Stringer("shard", sp))
			return func(pctx, sendCtx context.Context) error {
				sreg := &scopedRegisterer{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(sp.I)}, reg)}
				defer sreg.unregisterAll()
				return runPipeline(pctx, sendCtx, rc, cfg, slog, sreg, sp, func(ex *exporter.Exporter) { exps.set(sp.I, ex) })
			}
		},
	}
	log.Info("sharded: joining the replicas", zap.Int("shards", n), zap.String("members", lo.Election.Namespace+"/"+membersLeaseName(lo.Election.Name)), zap.String("identity", lo.Identity))
	return ss.run(ctx)
}

// scopedRegisterer registers through its Registerer and unregisters all
// it registered at once: a shard's pipeline may run again in the same
// process after a handover.
type scopedRegisterer struct {
	prometheus.Registerer
	mu sync.Mutex
	cs []prometheus.Collector
}

func (r *scopedRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return nil
}

func (r *scopedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *scopedRegisterer) unregisterAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		r.Registerer.Unregister(c)
	}
	r.cs = nil
}
