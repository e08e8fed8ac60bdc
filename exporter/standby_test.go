package exporter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// startStandby runs a standby Exporter over src with the one sink "rec"
// not built yet, and returns the harness and the recorder Lead will get.
func startStandby(t *testing.T, src *fakeSource, st state.Store) (*harness, *recorder) {
	t.Helper()
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, Options{Config: cfg, Resolver: newResolver(), Stores: map[string]state.Store{"rec": st}, Standby: true,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	return h, h.sinks["rec"]
}

// requests counts the lists and watch-lists src served for configmaps.
func (f *fakeSource) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listCalls[cmRes.GVR] + f.streams[cmRes.GVR]
}

func waitWarm(t *testing.T, ex *Exporter) {
	t.Helper()
	waitUntil(t, "standby, warm", func() bool { ok, why := ex.Healthy(); return ok && why == "standby, warm" })
}

// A warm standby lists and watches, but routes, stores and sends nothing
// while standing by, whatever changes. When it leads, it sends exactly what
// the shared checkpoint lacks: a restart gap marker, then the object
// changed while no one led, the one created, the one deleted (with its
// final state), and nothing for the object the checkpoint holds as it is,
// without listing again.
func TestWarmStandbyLeadsWithoutListingAndSendsOnlyWhatTheCheckpointLacks(t *testing.T) {
	src := newFakeSource(0)
	same := src.apply(cmRes.GVR, cm("a", "same", map[string]any{"v": "1"}), true)
	changed := src.apply(cmRes.GVR, cm("a", "changed", map[string]any{"v": "1"}), true)
	gone := src.apply(cmRes.GVR, cm("a", "gone", map[string]any{"v": "1"}), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}
	for _, u := range []*unstructured.Unstructured{same, changed, gone} {
		rec := recordOf(u)
		rec.Scope = cmScope("")
		st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	st.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
	before := st.Len()

	h, rec := startStandby(t, src, st)
	waitWarm(t, h.ex)
	if !h.ex.Standby() {
		t.Fatal("Standby() = false before Lead")
	}
	// Changes while standing by: seen by the informer, routed nowhere.
	src.apply(cmRes.GVR, cm("a", "changed", map[string]any{"v": "2"}), false)
	src.apply(cmRes.GVR, cm("a", "new", map[string]any{"v": "1"}), false)
	src.remove(cmRes.GVR, "a", "gone", false)
	waitUntil(t, "the informer to see the standby's changes", func() bool {
		s := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}]
		return s != nil && len(s.informer.GetIndexer().List()) == 3 && s.get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "new"}) != nil
	})
	if q := h.ex.runners[0].queue.Len(); q != 0 || h.ex.runners[0].pending.len() != 0 {
		t.Errorf("standing by: %d keys queued, %d pending, want none", q, h.ex.runners[0].pending.len())
	}
	if st.Len() != before {
		t.Errorf("standing by: the store went from %d to %d records; a standby must not write it", before, st.Len())
	}
	listed := src.requests()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": rec}); err != nil {
		t.Fatal(err)
	}
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": rec}); err == nil {
		t.Error("a second Lead was accepted")
	}
	evs := rec.waitFor(t, "the three changes made without a leader", func(evs []*event.Event) bool { return len(evs) >= 4 })
	evs = quiesce(t, h, "rec")
	if len(evs) != 4 {
		t.Fatalf("events after Lead:%s, want a gap marker and three changes", summary(evs))
	}
	if evs[0].Type != event.TypeGap || evs[0].Data.(*event.GapData).Reason != gapRestart {
		t.Errorf("first event %s, want the restart gap marker", evs[0].Type)
	}
	byName := map[string]*event.Event{}
	for _, e := range evs[1:] {
		byName[e.Name] = e
		if !e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s %s not recovered", e.Type, e.Name)
		}
	}
	for name, typ := range map[string]string{"changed": event.Modified.Type(), "new": event.Added.Type(), "gone": event.Deleted.Type()} {
		if e := byName[name]; e == nil || e.Type != typ {
			t.Errorf("%s: %v, want %s;%s", name, e, typ, summary(evs))
		}
	}
	if byName["same"] != nil {
		t.Errorf("the object the checkpoint held as it is was sent again: %s", byName["same"].Type)
	}
	if n := src.requests(); n != listed {
		t.Errorf("Lead made %d list or watch-list requests, want none", n-listed)
	}
	if h.ex.Standby() {
		t.Error("Standby() = true after Lead")
	}
}

// A standby whose scope had not synced when it took the Lease (the API
// server refused its lists) compares the scope once it syncs: nothing the
// informer saw before is lost.
func TestWarmStandbyComparesAScopeThatSyncsAfterLead(t *testing.T) {
	src := newFakeSource(0)
	src.apply(cmRes.GVR, cm("a", "x", nil), true)
	src.mu.Lock()
	src.listErr = map[schema.GroupVersionResource]error{cmRes.GVR: errors.New("unavailable")}
	src.noWatchList = true
	src.mu.Unlock()
	h, rec := startStandby(t, src, state.NewMemoryStore())
	waitUntil(t, "standby, warming", func() bool {
		_, why := h.ex.Healthy()
		return strings.HasPrefix(why, "standby, warming: scope ")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": rec}); err != nil {
		t.Fatal(err)
	}
	src.apply(cmRes.GVR, cm("a", "y", nil), true)
	src.mu.Lock()
	src.listErr = nil
	src.mu.Unlock()
	h.waitReady()
	// initialList: skip (the default) and no checkpoint: the first list is
	// the baseline; a change after it is sent.
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), false)
	rec.waitFor(t, "the change after the late sync", func(evs []*event.Event) bool {
		return count(evs, event.Modified.Type()) == 1
	})
	if r, ok := h.ex.runners[0].store.Get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "y"}); !ok || r.UID == "" {
		t.Errorf("the object listed after Lead is not the sink's baseline: %+v", r)
	}
}

// A standby that never leads stops without touching a sink.
func TestStandbyStopsWithoutSinks(t *testing.T) {
	src := newFakeSource(0)
	src.apply(cmRes.GVR, cm("a", "x", nil), true)
	h, rec := startStandby(t, src, state.NewMemoryStore())
	waitWarm(t, h.ex)
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec.closed || len(rec.got()) != 0 {
		t.Errorf("the standby's sink: closed=%v, %d events; it was never handed over", rec.closed, len(rec.got()))
	}
	if _, err := New(Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}), Resolver: newResolver(), clientFor: src.client}); err == nil {
		t.Error("New without sinks and without Standby: no error")
	}
	ex, err := New(Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}), Resolver: newResolver(), clientFor: src.client, Sinks: map[string]sinks.Sink{"rec": rec}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Lead(context.Background(), context.Background(), map[string]sinks.Sink{"rec": rec}); err == nil {
		t.Error("Lead on an Exporter that is not a standby: no error")
	}
}

// Sinks handed to a standby that stopped are not taken: Lead fails, so
// that the caller closes them (Run, which closes a leader's sinks, has
// returned). A Lead that races the stop is either taken by Run, which
// then closes the sinks, or fails.
func TestStandbyThatStoppedRefusesTheSinksHandedOver(t *testing.T) {
	src := newFakeSource(0)
	src.apply(cmRes.GVR, cm("a", "x", nil), true)
	h, _ := startStandby(t, src, state.NewMemoryStore())
	waitWarm(t, h.ex)
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ctx := context.Background()
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": &recorder{}}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Lead after Run returned: %v, want ErrStopped (the sinks would be left open)", err)
	}
	for i := 0; i < 20; i++ {
		h, _ := startStandby(t, src, state.NewMemoryStore())
		waitWarm(t, h.ex)
		handed := &recorder{}
		stopped := make(chan error, 1)
		go func() { stopped <- h.stop() }()
		err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": handed})
		if runErr := <-stopped; runErr != nil {
			t.Fatalf("Run: %v", runErr)
		}
		handed.mu.Lock()
		closed := handed.closed
		handed.mu.Unlock()
		if err == nil && !closed {
			t.Fatalf("round %d: Lead handed the sinks over as the standby stopped, and Run returned without closing them", i)
		}
	}
}

// standbyBehindCheckpoint starts a warm standby whose checkpoint knows the
// configmaps scope and holds recs, and waits until it is warm. lag, run
// once it is, makes the changes the old leader saw and recorded but the
// standby's watch has not delivered yet (a watch that lags, or a relist
// still in progress: the cache keeps the old state until it ends); it
// returns the objects as the API server now has them, whose records the
// checkpoint then holds.
func standbyBehindCheckpoint(t *testing.T, src *fakeSource, recs []*unstructured.Unstructured, lag func() []*unstructured.Unstructured) (*harness, *recorder, []*unstructured.Unstructured) {
	t.Helper()
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}
	put := func(u *unstructured.Unstructured) {
		rec := recordOf(u)
		rec.Scope = cmScope("")
		st.Put(state.Key{GVR: cmRes.GVR, Namespace: u.GetNamespace(), Name: u.GetName()}, rec)
	}
	for _, u := range recs {
		put(u)
	}
	st.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
	h, rec := startStandby(t, src, st)
	waitWarm(t, h.ex)
	now := lag()
	for _, u := range now {
		put(u) // the old leader delivered it and flushed its checkpoint
	}
	return h, rec, now
}

// leadNow hands the standby its sink and waits until it compared its
// caches with the checkpoint (promote is done once it says it delivers).
func leadNow(t *testing.T, h *harness, rec *recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": rec}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the standby to lead", func() bool { return h.ex.announced.Load() })
}

// letItWork gives a leader whose cache is behind its checkpoint the time
// to make a mistake: its keys wait for the watch, so nothing settles.
func letItWork() { time.Sleep(300 * time.Millisecond) }

// deliverLate makes the standby's watch deliver, at last, what lag changed.
func deliverLate(t *testing.T, h *harness, evs ...watch.Event) {
	t.Helper()
	h.src.mu.Lock()
	for _, ev := range evs {
		u := ev.Object.(*unstructured.Unstructured)
		h.src.send(cmRes.GVR, watch.Event{Type: ev.Type, Object: u.DeepCopy()}, u)
	}
	h.src.mu.Unlock()
}

// A warm standby whose watch has not delivered an object yet when it takes
// the Lease, an object the old leader delivered (the checkpoint holds it),
// does not tell the sink that the object was deleted: it was not, and
// audit pipelines and automation act on deletions. Its cache is behind the
// checkpoint, not the API server behind the record.
func TestWarmStandbyDoesNotDeleteAnObjectItsWatchHasNotDeliveredYet(t *testing.T) {
	src := newFakeSource(0)
	old := src.apply(cmRes.GVR, cm("a", "old", nil), true)
	h, rec, now := standbyBehindCheckpoint(t, src, []*unstructured.Unstructured{old}, func() []*unstructured.Unstructured {
		return []*unstructured.Unstructured{src.apply(cmRes.GVR, cm("a", "late", nil), true)}
	})
	late := now[0]
	leadNow(t, h, rec)
	letItWork() // the keys wait for the watch: nothing may be sent meanwhile
	deliverLate(t, h, watch.Event{Type: watch.Added, Object: late})
	waitUntil(t, "the late object in the cache", func() bool {
		return h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "late"}) != nil
	})
	evs := quiesce(t, h, "rec")
	for _, e := range evs {
		if e.Name == "late" {
			t.Errorf("sent %s for an object that exists and whose checkpoint record is current;%s", e.Type, summary(evs))
		}
	}
}

// A warm standby whose cache holds an older version of an object than the
// one the old leader delivered never sends that older version: per object,
// events reach a sink in resourceVersion order, and a consumer that has
// version 2 must not be told the object went back to version 1.
func TestWarmStandbyNeverSendsAVersionOlderThanTheCheckpoints(t *testing.T) {
	src := newFakeSource(0)
	v1 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	h, rec, now := standbyBehindCheckpoint(t, src, []*unstructured.Unstructured{v1}, func() []*unstructured.Unstructured {
		return []*unstructured.Unstructured{src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)}
	})
	v2 := now[0]
	leadNow(t, h, rec)
	letItWork() // the keys wait for the watch: nothing may be sent meanwhile
	deliverLate(t, h, watch.Event{Type: watch.Modified, Object: v2})
	waitUntil(t, "version 2 in the cache", func() bool {
		u := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
		return u != nil && u.GetResourceVersion() == v2.GetResourceVersion()
	})
	evs := quiesce(t, h, "rec")
	for _, e := range evs {
		if e.Name == "x" && e.ResourceVersion != v2.GetResourceVersion() {
			t.Errorf("sent %s of version %s after the sink had version %s;%s", e.Type, e.ResourceVersion, v2.GetResourceVersion(), summary(evs))
		}
	}
}

// A warm standby whose cache still holds an incarnation that was deleted
// and replaced by a new one (same name, new uid), which the old leader
// delivered, neither deletes the new incarnation nor brings the old one
// back.
func TestWarmStandbyDoesNotResurrectAReplacedIncarnation(t *testing.T) {
	src := newFakeSource(0)
	first := src.apply(cmRes.GVR, cm("a", "x", nil), true)
	h, rec, now := standbyBehindCheckpoint(t, src, []*unstructured.Unstructured{first}, func() []*unstructured.Unstructured {
		src.remove(cmRes.GVR, "a", "x", true)
		u := cm("a", "x", nil)
		u.SetUID("uid-second")
		return []*unstructured.Unstructured{src.apply(cmRes.GVR, u, true)}
	})
	second := now[0]
	leadNow(t, h, rec)
	letItWork() // the keys wait for the watch: nothing may be sent meanwhile
	// The deletion's version is the remove's, before the new incarnation's.
	gone := first.DeepCopy()
	gone.SetResourceVersion(strconv.Itoa(parseInt(t, second.GetResourceVersion()) - 1))
	deliverLate(t, h, watch.Event{Type: watch.Deleted, Object: gone}, watch.Event{Type: watch.Added, Object: second})
	waitUntil(t, "the second incarnation in the cache", func() bool {
		u := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
		return u != nil && u.GetUID() == second.GetUID()
	})
	evs := quiesce(t, h, "rec")
	for _, e := range evs {
		if e.Name == "x" {
			t.Errorf("sent %s of uid %s; the checkpoint holds the current incarnation %s;%s", e.Type, e.UID, second.GetUID(), summary(evs))
		}
	}
}

// putCounter is a restored store that counts the Puts of object records.
type putCounter struct {
	*restoredStore
	puts atomic.Int64
}

func (p *putCounter) Put(k state.Key, r state.Record) {
	if !isSentinel(k) {
		p.puts.Add(1)
	}
	p.restoredStore.Put(k, r)
}

// The records a checkpointed sink keeps after an acknowledged event name
// the version it showed (Record.Sent, so that another sink that lacks it
// sends it with the same time). A warm standby whose cache holds exactly
// those versions queues none of them when it leads: it neither works
// through every key nor rewrites every record (a KV write each, and the
// rewritten record loses the time the other sinks need).
func TestWarmStandbyLeavesRecordsOfDeliveredVersionsAlone(t *testing.T) {
	src := newFakeSource(0)
	st := &putCounter{restoredStore: &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}}
	for i := range 20 {
		u := src.apply(cmRes.GVR, cm("a", fmt.Sprintf("o-%d", i), nil), true)
		rec := recordOf(u)
		rec.Scope, rec.Rule = cmScope(""), 1
		rec.Sent = &state.Sent{ResourceVersion: u.GetResourceVersion(), Time: time.Now().Add(-time.Hour).UTC()}
		st.restoredStore.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: u.GetName()}, rec)
	}
	st.restoredStore.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
	h, rec := startStandby(t, src, st)
	waitWarm(t, h.ex)
	leadNow(t, h, rec)
	if evs := quiesce(t, h, "rec"); len(evs) != 0 {
		t.Errorf("sent%s, want nothing", summary(evs))
	}
	if n := st.puts.Load(); n != 0 {
		t.Errorf("%d of 20 delivered and current records were queued and rewritten, want none", n)
	}
	if r, _ := st.Get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "o-0"}); r.Sent == nil {
		t.Error("the record lost the time its version was sent with")
	}
}

// A standby's metrics can be scraped while it takes the Lease: Lead hands
// over the sinks without racing the scrape that reads them (run with
// -race).
func TestWarmStandbyMetricsScrapeDoesNotRaceLead(t *testing.T) {
	src := newFakeSource(0)
	src.apply(cmRes.GVR, cm("a", "x", nil), true)
	reg := prometheus.NewRegistry()
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}), Resolver: newResolver(), Standby: true, Registerer: reg,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	waitWarm(t, h.ex)
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	leadNow(t, h, h.sinks["rec"])
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-scraped
}

// The old leader sent a change to one sink and not yet to the other: the
// new leader sends it to the other with the time the first one got
// (CloudEvents time is the same on every sink), which the checkpoint
// keeps, even though the standby's own watch saw the change earlier than
// the old leader did.
func TestWarmStandbySendsWithTheTimeTheOldLeaderSentOnAnotherSink(t *testing.T) {
	src := newFakeSource(0)
	v1 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	stores := map[string]state.Store{}
	for _, name := range []string{"rec", "other"} {
		st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}
		rec := recordOf(v1)
		rec.Scope, rec.Rule = cmScope(""), 1
		st.Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}, rec)
		st.Put(sentinelKey(scopeID{GVR: cmRes.GVR}), state.Record{Scope: cmScope("")})
		stores[name] = st
	}
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}, "other": {}}, done: make(chan struct{})}
	h.run(t, Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}, "rec", "other"), Resolver: newResolver(), Stores: stores, Standby: true,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	waitWarm(t, h.ex)
	// The standby's watch sees v2 first; the old leader a little later,
	// and it sends v2 to rec, with its time, before it dies.
	v2 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), false)
	waitUntil(t, "the standby to see v2", func() bool {
		u := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
		return u != nil && u.GetResourceVersion() == v2.GetResourceVersion()
	})
	leaderSaw := time.Now().Add(50 * time.Millisecond).UTC()
	rec := recordOf(v2)
	rec.Scope, rec.Rule = cmScope(""), 1
	rec.Sent = &state.Sent{ResourceVersion: v2.GetResourceVersion(), Time: leaderSaw}
	stores["rec"].Put(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}, rec)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.ex.Lead(ctx, ctx, map[string]sinks.Sink{"rec": h.sinks["rec"], "other": h.sinks["other"]}); err != nil {
		t.Fatal(err)
	}
	evs := h.sinks["other"].waitFor(t, "v2 on the other sink", func(evs []*event.Event) bool { return count(evs, event.Modified.Type()) == 1 })
	for _, e := range evs {
		if e.Type == event.Modified.Type() && !e.Time.Equal(leaderSaw) {
			t.Errorf("v2 reached the other sink with time %s; the first sink got it with %s", e.Time.Format(time.RFC3339Nano), leaderSaw.Format(time.RFC3339Nano))
		}
	}
}

func parseInt(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// shareCounter is a restored store that records what Share was offered.
type shareCounter struct {
	*restoredStore
	mu     sync.Mutex
	shared map[string]*unstructured.Unstructured
}

func (s *shareCounter) Share(k state.Key, obj *unstructured.Unstructured) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shared[k.Name] = obj
	return true
}

// A warm standby points the records it follows at its cached objects (one
// copy of each object, not its cache and the decoded checkpoint), unless a
// rule of the scope redacts: those records stay as they rest.
func TestWarmStandbySharesItsCachedObjectsWithTheRecordsItFollows(t *testing.T) {
	for _, redact := range []bool{false, true} {
		t.Run(fmt.Sprintf("redacting %v", redact), func(t *testing.T) {
			src := newFakeSource(0)
			for i := range 5 {
				src.apply(cmRes.GVR, cm("a", fmt.Sprintf("o-%d", i), nil), true)
			}
			st := &shareCounter{restoredStore: &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}, shared: map[string]*unstructured.Unstructured{}}
			w := config.Watch{Resource: "configmaps"}
			if redact {
				w.RedactPaths = []string{"/data/password"}
			}
			h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
			h.run(t, Options{Config: newConfig([]config.Watch{w}), Resolver: newResolver(), Stores: map[string]state.Store{"rec": st}, Standby: true,
				Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
			waitWarm(t, h.ex)
			n := h.ex.shareCaches()
			st.mu.Lock()
			defer st.mu.Unlock()
			if redact {
				if n != 0 || len(st.shared) != 0 {
					t.Errorf("a redacting rule's records were shared: %d", len(st.shared))
				}
				return
			}
			if n != 5 || len(st.shared) != 5 {
				t.Fatalf("shared %d (%d offered), want the 5 cached objects", n, len(st.shared))
			}
			s := h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}]
			for name, obj := range st.shared {
				if s.get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: name}) != obj {
					t.Errorf("%s: offered another object than the cached one", name)
				}
			}
		})
	}
}

// Two scopes of one resource route to one sink: the first rule (all
// namespaces) redacts /data/password and delivers a/x, so its record rests
// redacted; the second (namespace a) redacts nothing. The standby must not
// point a/x's record at its raw cached object through the second scope:
// the shared record (Redact nil, AtRest false) is what a modification
// after promotion writes ahead (plan.Ahead, rec := *last), unredacted.
func TestWarmStandbyDoesNotShareAnObjectThatAnOverlappingScopeRedacts(t *testing.T) {
	src := newFakeSource(0)
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"password": "hunter2"}), true)
	st := &shareCounter{restoredStore: &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Minute)}, shared: map[string]*unstructured.Unstructured{}}
	watches := []config.Watch{
		{Resource: "configmaps", RedactPaths: []string{"/data/password"}},
		{Resource: "configmaps", Namespaces: []string{"a"}},
	}
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, Options{Config: newConfig(watches), Resolver: newResolver(), Stores: map[string]state.Store{"rec": st}, Standby: true,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	waitWarm(t, h.ex)
	if len(h.ex.scopeSet()) != 2 {
		t.Fatalf("%d scopes, want 2", len(h.ex.scopeSet()))
	}
	h.ex.shareCaches()
	st.mu.Lock()
	defer st.mu.Unlock()
	if obj, ok := st.shared["x"]; ok {
		t.Errorf("a/x offered to Share through the scope that does not redact (data %v), though the first rule routing to the sink redacts /data/password: its record would rest unredacted", obj.Object["data"])
	}
}
