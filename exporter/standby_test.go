package exporter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

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
