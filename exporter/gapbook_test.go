package exporter

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// The ids of sent gap markers are remembered for an hour, not forever.
func TestGapBookForgetsOldMarkers(t *testing.T) {
	b := newGapBook()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		b.markSent(&gap{ev: &event.Event{ID: fmt.Sprintf("g%d", i)}}, start)
	}
	if !b.markSent(&gap{ev: &event.Event{ID: "late"}}, start.Add(2*gapMemory)) {
		t.Fatal("a new marker was taken as sent")
	}
	if n := len(b.sent); n != 1 {
		t.Fatalf("%d marker ids remembered after two hours, want 1", n)
	}
	if b.isSent(&gap{ev: &event.Event{ID: "g1"}}) {
		t.Error("an hour-old marker id is still remembered")
	}
}

// A recovered change waits for its gap marker's ack, and holds back only
// its own worker: with two workers, a live change of another object is
// sent while the marker is unacknowledged; a marker whose send fails is
// sent again, and only its ack lets the recovered change go.
func TestRecoveredChangeWaitsForItsMarkerHoldingBackOnlyItsWorker(t *testing.T) {
	sink := &answeredSink{pubs: make(chan answeredPub, 16)}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.Workers = 2
	h := startHarness(t, cfg, harnessOpts{sink: sink})
	h.waitReady()
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	if p := sink.next(t); brief(p.evs) != "added x" {
		t.Fatalf("first publish %s, want added x", summary(p.evs))
	} else {
		p.done(nil)
	}

	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)
	h.src.expire(cmRes.GVR)
	marker := sink.next(t)
	if len(marker.evs) != 1 || marker.evs[0].Type != event.TypeGap {
		t.Fatalf("publish after the relist %s, want the gap marker alone", summary(marker.evs))
	}

	h.src.apply(cmRes.GVR, cm("a", "y", nil), false)
	if p := sink.next(t); brief(p.evs) != "added y" {
		t.Fatalf("publish while the marker is unacknowledged %s, want the live add of y", summary(p.evs))
	} else {
		p.done(nil)
	}
	select {
	case p := <-sink.pubs:
		t.Fatalf("%s published before its gap marker was acknowledged", summary(p.evs))
	case <-time.After(200 * time.Millisecond):
	}

	marker.done(errors.New("nack"))
	again := sink.next(t)
	if len(again.evs) != 1 || again.evs[0].ID != marker.evs[0].ID {
		t.Fatalf("publish after the marker failed %s, want the same marker again", summary(again.evs))
	}
	again.done(nil)
	p := sink.next(t)
	if len(p.evs) != 1 || p.evs[0].Type != event.Modified.Type() || !p.evs[0].Data.(*event.ChangeData).Recovered {
		t.Fatalf("publish after the marker's ack %s, want x modified and recovered", summary(p.evs))
	}
	p.done(nil)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.ex.Stats()["rec"]; st.Gaps != 1 || st.Delivered != 4 {
		t.Errorf("stats %+v, want 1 gap and 4 events delivered (the marker counted once)", st)
	}
}

// brief is "added x" for an added x, "gap" for a marker, space-separated.
func brief(evs []*event.Event) string {
	var parts []string
	for _, e := range evs {
		if e.Type == event.TypeGap {
			parts = append(parts, "gap")
			continue
		}
		parts = append(parts, strings.TrimPrefix(e.Type, "io.kubefeed.resource.")+" "+e.Name)
	}
	return strings.Join(parts, " ")
}

// gapLen is how many markers the sink has still to send, and how many
// keys wait for one (their change recovered through a marker it has not
// acknowledged).
func gapLen(r *sinkRunner) (unsent, waiting int) {
	sent := map[string]bool{}
	r.gaps.mu.Lock()
	for _, l := range r.gaps.needed {
		unsent += len(l)
	}
	for id := range r.gaps.sent {
		sent[id] = true
	}
	r.gaps.mu.Unlock()
	r.pending.mu.Lock()
	defer r.pending.mu.Unlock()
	for _, p := range r.pending.m {
		if p.recovered != nil && !sent[p.recovered.ev.ID] {
			waiting++
		}
	}
	return unsent, waiting
}

// oddName is the i-th object name of a test with many keys, some with '/'
// and '~' in them (JSON-pointer and cache-key separators).
func oddName(i int) string {
	switch i % 3 {
	case 1:
		return fmt.Sprintf("o/%d~1", i)
	case 2:
		return fmt.Sprintf("o~0%d/", i)
	}
	return fmt.Sprintf("o-%d", i)
}

// Over 500 keys recovered by one relist wait for one gap marker whose send
// fails retryably three times: the marker is acknowledged once, before any
// recovered change, every key is then sent exactly once, and the gap book
// is empty again.
func TestManyKeysWaitForOneMarkerThatFailsBeforeItsAck(t *testing.T) {
	const n = 600
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	var mu sync.Mutex
	markerCalls := 0
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		for _, e := range evs {
			if e.Type == event.TypeGap {
				mu.Lock()
				defer mu.Unlock()
				if markerCalls++; markerCalls <= 3 {
					return errors.New("nack")
				}
			}
		}
		return nil
	}}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.Workers = 4
	h := startHarness(t, cfg, harnessOpts{src: src, sink: sink})
	h.waitReady()
	applyOdd(src, n, "2")
	src.expire(cmRes.GVR)
	sink.waitFor(t, "every recovered change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	r := h.ex.byName["rec"]
	waitUntil(t, "no key pending", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	evs := sink.got()
	if len(evs) == 0 || evs[0].Type != event.TypeGap {
		t.Fatalf("first acknowledged event: %s, want the gap marker", summary(evs))
	}
	if c := count(evs, event.TypeGap); c != 1 {
		t.Errorf("%d gap markers acknowledged, want 1", c)
	}
	seen := map[string]int{}
	for _, e := range evs[1:] {
		if e.Type != event.Modified.Type() {
			t.Errorf("unexpected %s %s", e.Type, e.Name)
			continue
		}
		seen[e.Name]++
		if !e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s not marked recovered", e.Name)
		}
	}
	for i := 0; i < n; i++ {
		if seen[oddName(i)] != 1 {
			t.Errorf("%s sent %d times, want once", oddName(i), seen[oddName(i)])
		}
	}
	mu.Lock()
	if markerCalls != 4 {
		t.Errorf("marker sent %d times, want 4 (three failures, one ack)", markerCalls)
	}
	mu.Unlock()
	if unsent, waiting := gapLen(r); unsent != 0 || waiting != 0 {
		t.Errorf("gap book holds %d unsent markers and %d parked keys after the ack, want none", unsent, waiting)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.ex.Stats()["rec"]; st.Gaps != 1 || st.Delivered != n+1 || st.Recovered != n {
		t.Errorf("stats %+v, want 1 gap, %d delivered and %d recovered", st, n+1, n)
	}
}

// A gap marker the sink refuses for good is counted dropped, and the
// recovered changes waiting for it go on (they are not held forever); the
// gap book is empty afterwards.
func TestMarkerRefusedForGoodReleasesItsKeys(t *testing.T) {
	src := newFakeSource(0)
	applyOdd(src, 20, "1")
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type == event.TypeGap {
			return sinks.Permanent(errors.New("refused"))
		}
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	applyOdd(src, 20, "2")
	src.expire(cmRes.GVR)
	sink.waitFor(t, "every recovered change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= 20 })
	r := h.ex.byName["rec"]
	waitUntil(t, "no key pending", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	if c := count(sink.got(), event.TypeGap); c != 0 {
		t.Errorf("%d refused markers recorded", c)
	}
	if unsent, waiting := gapLen(r); unsent != 0 || waiting != 0 {
		t.Errorf("gap book holds %d unsent markers and %d parked keys, want none", unsent, waiting)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.ex.Stats()["rec"]; st.Dropped != 1 || st.Delivered != 20 {
		t.Errorf("stats %+v, want the marker dropped and 20 events delivered", st)
	}
}

// Stopped while recovered changes wait for a marker that keeps failing,
// Run returns at once, nothing of them is recorded as delivered, and the
// next start (from the same delivered state) sends them, after its own
// marker.
func TestKeysParkedAtShutdownAreSentByTheNextStart(t *testing.T) {
	const n = 30
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	var markers atomic.Int64
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type == event.TypeGap {
			markers.Add(1)
			return errors.New("nack")
		}
		return nil
	}}
	mem := state.NewMemoryStore()
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink, stores: map[string]state.Store{"rec": mem}})
	h.waitReady()
	v2 := map[string]string{}
	for i := 0; i < n; i++ {
		v2[oddName(i)] = src.apply(cmRes.GVR, cm("a", oddName(i), map[string]any{"v": "2"}), true).GetResourceVersion()
	}
	src.expire(cmRes.GVR)
	r := h.ex.byName["rec"]
	waitUntil(t, "every key parked", func() bool { _, w := gapLen(r); return w == n && markers.Load() >= 2 })
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %s to return with keys parked", d)
	}
	if c := count(sink.got(), event.Modified.Type()); c != 0 {
		t.Fatalf("%d recovered changes sent without their marker", c)
	}
	if r.pending.len() != n {
		t.Errorf("%d keys pending after the stop, want %d (undelivered, not forgotten)", r.pending.len(), n)
	}
	mem.Range(func(k state.Key, rec state.Record) bool {
		if !isSentinel(k) && rec.ResourceVersion == v2[k.Name] {
			t.Errorf("%s recorded as delivered at %s", k.Name, rec.ResourceVersion)
		}
		return true
	})

	next := &restoredStore{MemoryStore: mem, at: time.Now().Add(-time.Second)}
	again := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": next}})
	evs := again.sinks["rec"].waitFor(t, "the recovered changes after the restart", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	if evs[0].Type != event.TypeGap {
		t.Errorf("first event after the restart %s %s, want its gap marker", evs[0].Type, evs[0].Name)
	}
	got := map[string]int{}
	for _, e := range evs {
		if e.Type == event.Modified.Type() {
			got[e.Name]++
			if e.ResourceVersion != v2[e.Name] || !e.Data.(*event.ChangeData).Recovered {
				t.Errorf("%s sent at %s (recovered %v), want %s recovered", e.Name, e.ResourceVersion, e.Data.(*event.ChangeData).Recovered, v2[e.Name])
			}
		}
	}
	if len(got) != n {
		t.Errorf("%d objects sent after the restart, want %d", len(got), n)
	}
}

// A second relist while the first one's marker is still unacknowledged
// recovers every key again, through its own marker. Once the sink takes
// markers again, the first marker, which no key waits for any more, must
// not reach the sink after the recovered changes of its scope: a consumer
// would read it as an outage whose changes are still to come.
func TestSupersededMarkerIsNotSentAfterTheRecoveredChanges(t *testing.T) {
	const n = 3
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	sink, failing := markerRefusingSink()
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	r := h.ex.byName["rec"]
	applyOdd(src, n, "2")
	src.expire(cmRes.GVR)
	waitUntil(t, "every key parked on the first marker", func() bool { _, w := gapLen(r); return w == n })
	firstID := recoveredIDs(r)[0]
	applyOdd(src, n, "3")
	src.expire(cmRes.GVR)
	// Every key now waits for the second marker; the first, which no key
	// refers to any more, goes before it.
	waitUntil(t, "every key waiting for the second marker", func() bool {
		ids := recoveredIDs(r)
		u, w := gapLen(r)
		return len(ids) == 1 && ids[0] != firstID && u == 2 && w == n
	})
	failing.Store(false)
	sink.waitFor(t, "every recovered change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	waitUntil(t, "no key pending and no marker left to send", func() bool {
		u, _ := gapLen(r)
		return r.pending.len() == 0 && r.queue.Len() == 0 && u == 0
	})
	evs := sink.got()
	recovered := false
	for i, e := range evs {
		switch {
		case e.Type == event.Modified.Type():
			recovered = true
		case e.Type == event.TypeGap && recovered:
			d := e.Data.(*event.GapData)
			t.Errorf("event %d: gap marker %s (%s, from %s to %s) sent after recovered changes of its scope:%s",
				i, e.ID, d.Reason, d.From.Format(time.StampMilli), d.To.Format(time.StampMilli), summary(evs))
		}
	}
	if c := count(evs, event.Modified.Type()); c != n {
		t.Errorf("%d recovered changes, want %d", c, n)
	}
}

// Recovered changes queued when the shutdown begins are delivered by the
// drain once their gap marker is acknowledged during it.
func TestDrainSendsRecoveredChangesWhoseMarkerIsAcknowledgedDuringIt(t *testing.T) {
	const n = 20
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	gapSeen, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type == event.TypeGap {
			once.Do(func() { close(gapSeen) })
			<-release
		}
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	applyOdd(src, n, "2")
	src.expire(cmRes.GVR)
	select {
	case <-gapSeen:
	case <-time.After(20 * time.Second):
		t.Fatal("no gap marker sent")
	}
	r := h.ex.byName["rec"]
	waitUntil(t, "every key queued", func() bool { return r.pending.len() == n })
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	waitUntil(t, "the drain", r.queue.ShuttingDown)
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if c := count(sink.got(), event.Modified.Type()); c != n {
		t.Errorf("the drain sent %d of %d recovered changes queued before it", c, n)
	}
}

// --- audit of 68b2ed5 -------------------------------------------------------

// answerAll answers every publish of sink with err until stop is closed.
func answerAll(sink *answeredSink, err error, stop <-chan struct{}) {
	for {
		select {
		case p := <-sink.pubs:
			p.done(err)
		case <-stop:
			return
		}
	}
}

// Keys whose marker is acknowledged during the shutdown drain are
// delivered by the drain, but the drain stays bounded by the shutdown
// timeout: a sink that does not answer their sends (a broker gone, acks
// only failed on Close) must not hold Run past it.
func TestDrainOfKeysResumedByAMarkerAckStaysWithinTheShutdownTimeout(t *testing.T) {
	const n = 5
	src := newFakeSource(0)
	sink := &answeredSink{pubs: make(chan answeredPub, 1024)}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.ShutdownTimeout.Duration = 2 * time.Second
	h := startHarness(t, cfg, harnessOpts{src: src, sink: sink})
	h.waitReady()
	applyOdd(src, n, "1")
	src.expire(cmRes.GVR)
	marker := sink.next(t)
	if len(marker.evs) != 1 || marker.evs[0].Type != event.TypeGap {
		t.Fatalf("first publish %s, want the gap marker", summary(marker.evs))
	}
	r := h.ex.byName["rec"]
	waitUntil(t, "every key parked", func() bool { _, w := gapLen(r); return w == n })
	h.cancel()
	waitUntil(t, "the drain", r.queue.ShuttingDown)
	start := time.Now()
	marker.done(nil)
	select {
	case <-h.done:
	case <-time.After(3 * cfg.ShutdownTimeout.Duration):
		t.Errorf("Run still running %s after the shutdown began (shutdownTimeout %s): the drain of the resumed keys waits for their acks unbounded",
			time.Since(start).Round(time.Millisecond), cfg.ShutdownTimeout.Duration)
		stop := make(chan struct{})
		go answerAll(sink, errors.New("nack"), stop)
		<-h.done
		close(stop)
	}
}

// gapReasons is the reasons of the markers the book holds unsent.
func (b *gapBook) gapReasons() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range b.needed {
		for _, g := range l {
			out = append(out, g.ev.Data.(*event.GapData).Reason)
		}
	}
	return out
}

// A restart's gap marker is always sent (docs/architecture.md: "a
// restart's marker, queued on its own, always is"): the keys it recovered
// being recovered again by a relist before its ack does not make the sink
// lose the restart (the relist's marker starts after the restart, and does
// not cover the time kubefeed was down).
func TestRestartMarkerIsSentWhenARelistRecoversItsKeysAgain(t *testing.T) {
	const n = 30
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	mem := state.NewMemoryStore()
	first := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": mem}})
	first.waitReady()
	waitUntil(t, "the first list recorded", func() bool {
		c := 0
		mem.Range(func(k state.Key, _ state.Record) bool {
			if !isSentinel(k) {
				c++
			}
			return true
		})
		return c == n
	})
	quiesce(t, first, "rec")
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	applyOdd(src, n, "2") // while kubefeed is down
	sink, failing := markerRefusingSink()
	next := &restoredStore{MemoryStore: mem, at: time.Now().Add(-time.Minute)}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink, stores: map[string]state.Store{"rec": next}})
	r := h.ex.byName["rec"]
	waitUntil(t, "every key parked on the restart marker", func() bool { _, w := gapLen(r); return w == n })
	t.Logf("unsent before the relist: %v", r.gaps.gapReasons())
	applyOdd(src, n, "3")
	src.expire(cmRes.GVR)
	waitUntil(t, "every key parked on the relist marker", func() bool {
		rs := r.gaps.gapReasons()
		_, w := gapLen(r)
		return w == n && len(rs) > 0 && (len(rs) > 1 || rs[0] == gapRelist)
	})
	t.Logf("unsent after the relist: %v", r.gaps.gapReasons())
	failing.Store(false)
	evs := sink.waitFor(t, "every recovered change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	waitUntil(t, "no key pending", func() bool { return r.pending.len() == 0 && r.queue.Len() == 0 })
	evs = sink.got()
	var reasons []string
	for _, e := range evs {
		if e.Type == event.TypeGap {
			d := e.Data.(*event.GapData)
			reasons = append(reasons, fmt.Sprintf("%s from %s to %s", d.Reason, d.From.Format(time.StampMilli), d.To.Format(time.StampMilli)))
		}
	}
	restart := false
	for _, e := range evs {
		restart = restart || (e.Type == event.TypeGap && e.Data.(*event.GapData).Reason == gapRestart)
	}
	if !restart {
		t.Errorf("the sink got gap markers %v and %d recovered changes, but never the restart's marker (kubefeed down since %s)",
			reasons, count(evs, event.Modified.Type()), next.at.Format(time.StampMilli))
	}
}

// A marker superseded while its send is in flight (a slow sink, several
// workers) must not reach the sink after the recovered changes of the
// marker that superseded it: the keys leave the old marker at once, the
// new marker and their changes go out on other workers, and the old
// marker's send completes last.
func TestMarkerSupersededWhileInFlightDoesNotReachTheSinkAfterTheRecoveredChanges(t *testing.T) {
	const n = 3
	r, src, sink, first, release := relistWithFirstMarkerHeld(t, n, nil)
	applyOdd(src, n, "3")
	src.expire(cmRes.GVR)
	// The keys move to the second relist's marker while the first one's
	// send is in flight; then the first is answered.
	waitUntil(t, "every key on the second relist's marker", func() bool {
		ids := recoveredIDs(r)
		return len(ids) == 1 && ids[0] != first
	})
	close(release)
	sink.waitFor(t, "the recovered changes", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	sink.waitFor(t, "the first marker's send to end", func(e []*event.Event) bool {
		for _, ev := range e {
			if ev.ID == first {
				return true
			}
		}
		return false
	})
	assertMarkersInOrder(t, sink.got(), first)
}

// A second relist that changes only some keys moves those to its own
// marker; the others stay on the first one. The first marker must still
// not reach the sink after the recovered changes of the keys that left
// it (their changes were recovered through it as well, and it is still
// to be sent): here its first send is slow and fails, the second marker
// and its keys go out meanwhile, and the first marker's retry follows
// them.
func TestFirstMarkerDoesNotFollowTheChangesOfKeysThatLeftIt(t *testing.T) {
	const n = 6
	r, src, sink, firstID, release := relistWithFirstMarkerHeld(t, n, errors.New("nack"))
	for i := 0; i < n; i += 2 {
		src.apply(cmRes.GVR, cm("a", oddName(i), map[string]any{"v": "3"}), true)
	}
	src.expire(cmRes.GVR)
	waitUntil(t, "the second relist's marker noted", func() bool { u, _ := gapLen(r); return u == 2 })
	close(release)
	evs := sink.waitFor(t, "every recovered change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= n })
	assertMarkersInOrder(t, evs, firstID)
}

// assertMarkersInOrder checks evs of two relists of one scope: the first
// relist's marker (first) is the first marker the sink got, and no
// recovered change precedes it; so the first marker never reaches the
// sink after changes recovered through the second. (Which of the two a
// change follows is not asserted: a worker may plan a change of the second
// relist before the handler noted it through the second marker, and send
// it after the first; it is still recovered, after a marker of its scope.)
func assertMarkersInOrder(t *testing.T, evs []*event.Event, first string) {
	t.Helper()
	var markers []int
	for i, e := range evs {
		if e.Type == event.TypeGap {
			markers = append(markers, i)
		}
	}
	if len(markers) == 0 || evs[markers[0]].ID != first {
		t.Fatalf("the first relist's marker %s is not the first marker the sink got:%s", first, summary(evs))
	}
	for i, e := range evs[:markers[0]] {
		if e.Type == event.Modified.Type() {
			t.Errorf("event %d: a recovered change before any marker:%s", i, summary(evs))
		}
	}
}

// A relist whose recovered changes all send nothing (here: modifications
// the rule does not report) leaves no marker behind: the gap book does
// not grow by one marker per such relist, and a later recovered change of
// the scope is not preceded by the stale markers of all those relists.
func TestMarkerOfARelistWhoseChangesSendNothingDoesNotStay(t *testing.T) {
	const relists = 2
	cfg := newConfig([]config.Watch{{Resource: "configmaps", Events: []string{config.EventAdded, config.EventDeleted}}})
	h := startHarness(t, cfg, harnessOpts{})
	h.waitReady()
	r := h.ex.byName["rec"]
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "0"}), false)
	h.sinks["rec"].waitFor(t, "added x", func(e []*event.Event) bool { return count(e, event.Added.Type()) >= 1 })
	for i := 1; i <= relists; i++ {
		// A live add moves the scope's last event: each relist is another outage.
		h.src.apply(cmRes.GVR, cm("a", fmt.Sprintf("live-%d", i), nil), false)
		h.sinks["rec"].waitFor(t, "the live add", func(e []*event.Event) bool { return count(e, event.Added.Type()) >= 1+i })
		before := h.ex.relists.Load()
		h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": fmt.Sprint(i)}), true)
		h.src.expire(cmRes.GVR)
		waitUntil(t, fmt.Sprintf("relist %d", i), func() bool { return h.ex.relists.Load() > before })
		quiesce(t, h, "rec")
	}
	unsent, _ := gapLen(r)
	h.src.apply(cmRes.GVR, cm("a", "z", nil), true)
	h.src.expire(cmRes.GVR)
	evs := h.sinks["rec"].waitFor(t, "recovered add of z", func(e []*event.Event) bool {
		for _, ev := range e {
			if ev.Name == "z" {
				return true
			}
		}
		return false
	})
	markers := 0
	for _, ev := range evs {
		if ev.Type == event.TypeGap {
			markers++
		}
	}
	if unsent != 0 {
		t.Errorf("after %d relists that sent nothing the gap book holds %d unsent markers, want 0", relists, unsent)
	}
	if markers != 1 {
		t.Errorf("%d gap markers precede the one recovered change, want 1:%s", markers, summary(evs))
	}
}

// Two scopes of one sink cover a key (configmaps in namespace a, and
// cluster-wide), and both relist before a worker gets to the key: its
// recovered change follows the markers of both scopes.
func TestOverlappingScopesBothRelistEachMarkerPrecedesTheChange(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps", Namespaces: []string{"a"}}, {Resource: "configmaps"}})
	cfg.Workers = 1
	release := make(chan struct{})
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Name == "busy" && evs[0].Type == event.Modified.Type() {
			<-release // holds the one worker while both scopes relist
		}
		return nil
	}}
	h := startHarness(t, cfg, harnessOpts{sink: sink})
	h.waitReady()
	r := h.ex.byName["rec"]
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	h.src.apply(cmRes.GVR, cm("b", "busy", map[string]any{"v": "1"}), false)
	sink.waitFor(t, "both added", func(e []*event.Event) bool { return count(e, event.Added.Type()) >= 2 })
	h.src.apply(cmRes.GVR, cm("b", "busy", map[string]any{"v": "2"}), false)
	waitUntil(t, "the worker held", func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.calls >= 3 })
	before := h.ex.relists.Load()
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)
	h.src.expire(cmRes.GVR)
	waitUntil(t, "both scopes relisted", func() bool { return h.ex.relists.Load() >= before+2 })
	waitUntil(t, "x recovered through both scopes", func() bool {
		return len(recoveredIDs(r)) == 1 && len(r.pending.snapshot(keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})).others) == 1
	})
	close(release)
	evs := sink.waitFor(t, "x recovered", func(e []*event.Event) bool { return count(e, event.Modified.Type()) >= 2 })
	var scopes []string
	for _, e := range evs {
		if e.Type == event.TypeGap {
			scopes = append(scopes, e.Data.(*event.GapData).Scope)
		}
		if e.Type == event.Modified.Type() && e.Name == "x" {
			break
		}
	}
	if len(scopes) != 2 || scopes[0] == scopes[1] {
		t.Errorf("markers before x's recovered change: %v, want one of each scope:%s", scopes, summary(evs))
	}
	waitUntil(t, "no marker left to send", func() bool { u, _ := gapLen(r); return u == 0 })
}

// recoveredIDs is the ids of the markers the sink's pending keys are
// recovered through.
func recoveredIDs(r *sinkRunner) []string {
	r.pending.mu.Lock()
	defer r.pending.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, p := range r.pending.m {
		if p.recovered != nil && !seen[p.recovered.ev.ID] {
			seen[p.recovered.ev.ID] = true
			out = append(out, p.recovered.ev.ID)
		}
	}
	return out
}

// relistWithFirstMarkerHeld starts a sink of n ConfigMaps (odd names),
// changes them all quietly and relists; the first marker's send is held
// until release is closed, then answered with answer. It returns once
// every key waits for that marker, with the sink and the marker's id.
func relistWithFirstMarkerHeld(t *testing.T, n int, answer error) (*sinkRunner, *fakeSource, *recorder, string, chan struct{}) {
	t.Helper()
	src := newFakeSource(0)
	applyOdd(src, n, "1")
	inFlight, release := make(chan string, 1), make(chan struct{})
	var once sync.Once
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type != event.TypeGap {
			return nil
		}
		held := false
		once.Do(func() { held = true })
		if !held {
			return nil
		}
		inFlight <- evs[0].ID
		<-release
		return answer
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	r := h.ex.byName["rec"]
	applyOdd(src, n, "2")
	src.expire(cmRes.GVR)
	var first string
	select {
	case first = <-inFlight:
	case <-time.After(20 * time.Second):
		t.Fatal("no marker sent")
	}
	waitUntil(t, "every key waiting for the first marker", func() bool { _, w := gapLen(r); return w == n })
	return r, src, sink, first, release
}

// applyOdd sets n ConfigMaps of namespace a (oddName) to data v, quietly:
// no watch event, so only a relist or a restart finds the change.
func applyOdd(src *fakeSource, n int, v string) {
	for i := 0; i < n; i++ {
		src.apply(cmRes.GVR, cm("a", oddName(i), map[string]any{"v": v}), true)
	}
}

// markerRefusingSink is a recorder that refuses gap markers (retryably)
// while failing holds, which it does at first.
func markerRefusingSink() (*recorder, *atomic.Bool) {
	failing := &atomic.Bool{}
	failing.Store(true)
	return &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type == event.TypeGap && failing.Load() {
			return errors.New("nack")
		}
		return nil
	}}, failing
}
