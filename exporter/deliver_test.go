package exporter

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// crashPoint runs an exporter with a checkpointed sink until the sink
// acknowledges the first event of type typ after change ran, and returns
// that event with the checkpoint as it was durable when the sink got it:
// what a kubefeed killed right after that ack restarts from.
func crashPoint(t *testing.T, src *fakeSource, k Key, setup, change func(), typ string) (*event.Event, map[Key]Record) {
	t.Helper()
	st := newSyncStore()
	var (
		mu      sync.Mutex
		watched bool
		first   *event.Event
		durable map[Key]Record
	)
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if watched && first == nil && e.Type == typ {
				first = e
				st.mu.Lock()
				durable = make(map[Key]Record, len(st.durable))
				for dk, r := range st.durable {
					durable[dk] = r
				}
				st.mu.Unlock()
			}
		}
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
	h.waitReady()
	setup()
	// What the sink already has is durable before the change.
	waitUntil(t, "the delivered state to be durable", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		r, ok := st.durable[k]
		return ok && !r.Provisional && !r.Deleting && (r.Sent == nil || r.Sent.ResourceVersion == r.ResourceVersion)
	})
	mu.Lock()
	watched = true
	mu.Unlock()
	change()
	waitUntil(t, "the sink to get a "+typ+" event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	})
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	return first, durable
}

// restartFrom runs a new exporter over src whose sink restores durable,
// and returns the first event of type typ it sends.
func restartFrom(t *testing.T, src *fakeSource, durable map[Key]Record, typ string) *event.Event {
	t.Helper()
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Second)}
	for k, r := range durable {
		st.Put(k, r)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "a "+typ+" event after the restart", func(e []*event.Event) bool { return count(e, typ) > 0 })
	for _, e := range evs {
		if e.Type == typ {
			return e
		}
	}
	return nil
}

func sameEvent(t *testing.T, what string, first, again *event.Event) {
	t.Helper()
	a, err := event.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s sent again after a crash differs:\nfirst: %s\nagain: %s", what, a, b)
	}
}

// A deletion acknowledged by the sink just before kubefeed died, before
// its delivered state (the object gone) was durable, is sent again after
// the restart as the same event: the id of the deletion's version (not of
// the last delivered one), the final state, the time and the recovered
// mark of the first send.
func TestDeletionSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	src := newFakeSource(0)
	u := cm("a", "x", map[string]any{"v": "1"})
	u.SetUID("uid-x")
	first, durable := crashPoint(t, src, splitKey, func() { src.apply(cmRes.GVR, u, false) },
		func() { src.remove(cmRes.GVR, "a", "x", false) }, event.Deleted.Type())
	if r := durable[splitKey]; !r.Deleting || r.Sent == nil {
		t.Fatalf("durable record when the deletion was sent: %+v, want one written ahead of it (Deleting)", r)
	}
	again := restartFrom(t, src, durable, event.Deleted.Type())
	if again.ID != first.ID {
		t.Fatalf("the deletion was sent again as %s, first as %s", again.ID, first.ID)
	}
	sameEvent(t, "the deletion", first, again)
}

// The same for an added event (a provisional record) and a modification:
// sent again after a crash, each is the event the sink got first, with its
// time and recovered mark.
func TestChangeSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	for _, tc := range []struct {
		name, typ string
		setup     bool // the object exists before the run
		change    func(src *fakeSource)
	}{
		{"added", event.Added.Type(), false, func(src *fakeSource) {
			u := cm("a", "x", map[string]any{"v": "1"})
			u.SetUID("uid-x")
			src.apply(cmRes.GVR, u, false)
		}},
		{"modified", event.Modified.Type(), true, func(src *fakeSource) {
			u := cm("a", "x", map[string]any{"v": "2"})
			u.SetUID("uid-x")
			src.apply(cmRes.GVR, u, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(0)
			k := splitKey
			setup := func() {
				u := cm("a", "x", map[string]any{"v": "1"})
				u.SetUID("uid-x")
				src.apply(cmRes.GVR, u, false)
			}
			if !tc.setup {
				// Another object is delivered first, so that a durable
				// record exists before the change.
				k = Key{GVR: cmRes.GVR, Namespace: "a", Name: "anchor"}
				setup = func() { src.apply(cmRes.GVR, cm("a", "anchor", nil), false) }
			}
			first, durable := crashPoint(t, src, k, setup, func() { tc.change(src) }, tc.typ)
			if r := durable[splitKey]; r.Sent == nil || r.Sent.ResourceVersion != first.ResourceVersion || !r.Sent.Time.Equal(first.Time) {
				t.Fatalf("durable record when the %s event was sent: %+v, want one written ahead of it", tc.name, r)
			}
			again := restartFrom(t, src, durable, tc.typ)
			sameEvent(t, "the "+tc.name+" event", first, again)
		})
	}
}

// One change carries one time on every sink, whenever each sends it: here
// the second sink fails its first sends and delivers later, after a
// backoff; both events carry the time the change was first observed.
func TestEventTimeIsTheSameOnEverySinkAndRetry(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}}, "rec", "slow")
	h := startHarness(t, cfg, harnessOpts{src: src})
	slow := h.sinks["slow"]
	slow.mu.Lock()
	slow.fail = func(call int, _ []*event.Event) error {
		if call <= 2 {
			time.Sleep(20 * time.Millisecond)
			return errors.New("not yet")
		}
		return nil
	}
	slow.mu.Unlock()
	h.waitReady()
	before := time.Now()
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	h.sinks["rec"].waitFor(t, "the added event on rec", func(e []*event.Event) bool { return len(e) == 1 })
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), false)
	h.sinks["rec"].waitFor(t, "the modified event on rec", func(e []*event.Event) bool { return len(e) == 2 })
	src.remove(cmRes.GVR, "a", "x", false)
	done := func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 }
	a := h.sinks["rec"].waitFor(t, "the deletion on rec", done)
	b := slow.waitFor(t, "the deletion on slow", done)
	times := map[string]time.Time{}
	for _, e := range a {
		times[e.ID] = e.Time
		if e.Time.Before(before.Add(-time.Millisecond)) {
			t.Errorf("%s: time %s before the change was made (%s)", e.ID, e.Time, before)
		}
	}
	shared := 0
	for _, e := range b {
		at, ok := times[e.ID]
		if !ok {
			continue // merged on one sink only
		}
		shared++
		if !at.Equal(e.Time) {
			t.Errorf("%s: time %s on rec, %s on slow", e.ID, at.Format(time.RFC3339Nano), e.Time.Format(time.RFC3339Nano))
		}
	}
	if shared == 0 {
		t.Fatalf("no event id on both sinks: rec%s, slow%s", summary(a), summary(b))
	}
}

// After a restart, a sink that had not got a version yet sends it with
// the time the sink that had got it did: the checkpoint keeps when each
// delivered version was first observed.
func TestDeliveredTimeSurvivesRestartForLaggingSink(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	first := time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC)
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	had := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Scope = cmScope("")
	rec.Sent = &Sent{ResourceVersion: u.GetResourceVersion(), Time: first}
	had.Put(k, rec)
	lagging := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}, "rec", "lagging")
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]Store{"rec": had, "lagging": lagging}})
	evs := h.sinks["lagging"].waitFor(t, "the added event on the lagging sink", func(e []*event.Event) bool { return count(e, event.Added.Type()) == 1 })
	for _, e := range evs {
		if e.Type == event.Added.Type() && !e.Time.Equal(first) {
			t.Errorf("%s sent at %s by the lagging sink, first observed (and sent by the other) at %s", e.ID, e.Time, first)
		}
	}
}

// A checkpointed sink's delivered record keeps the time its event carried.
func TestDeliveredRecordKeepsItsEventTime(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	evs := h.sinks["rec"].waitFor(t, "the added event", func(e []*event.Event) bool { return len(e) == 1 })
	waitRecord(t, st, splitKey, evs[0].UID)
	r, _ := st.Get(splitKey)
	if r.Sent == nil || r.Sent.ResourceVersion != evs[0].ResourceVersion || !r.Sent.Time.Equal(evs[0].Time) {
		t.Errorf("delivered record Sent=%+v, want version %s at %s", r.Sent, evs[0].ResourceVersion, evs[0].Time)
	}
}

var _ sinks.Sink = (*recorder)(nil)
