package exporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// asyncRecorder is an AsyncSink with a window: it holds publishes until
// ackAt of them are outstanding (or none came for a moment), then
// acknowledges them in a shuffled order, failing those fail picks. It
// records what it acknowledged and every breach of the core's contract
// (an object published while its previous publish is outstanding).
type asyncRecorder struct {
	window chan struct{}
	ackAt  int
	fail   func(call int, evs []*event.Event) bool

	mu          sync.Mutex
	calls       int
	inFlight    map[string]bool
	published   map[string]bool // every object ever handed to Publish
	outstanding []asyncPub
	maxOut      int
	acked       []*event.Event
	ackedRV     map[string]map[string]bool
	violations  []string
	closed      bool
	kick, stop  chan struct{}
	stopped     chan struct{}
}

type asyncPub struct {
	call int
	evs  []*event.Event
	done func(error)
}

var _ sinks.AsyncSink = (*asyncRecorder)(nil)

func newAsyncRecorder(window, ackAt int, fail func(int, []*event.Event) bool) *asyncRecorder {
	a := &asyncRecorder{window: make(chan struct{}, window), ackAt: ackAt, fail: fail, inFlight: map[string]bool{}, published: map[string]bool{},
		ackedRV: map[string]map[string]bool{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go a.acker()
	return a
}

func (a *asyncRecorder) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	select {
	case a.window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		<-a.window
		return errors.New("closed") // retryable, as the sinks: the next start sends it
	}
	a.calls++
	for _, e := range evs {
		if a.inFlight[e.Name] {
			a.violations = append(a.violations, fmt.Sprintf("%s published while in flight (call %d)", e.Name, a.calls))
		}
		a.inFlight[e.Name] = true
		a.published[e.Name] = true
	}
	a.outstanding = append(a.outstanding, asyncPub{call: a.calls, evs: evs, done: done})
	a.maxOut = max(a.maxOut, len(a.outstanding))
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// Send takes gap markers (sent on their own, blocking).
func (a *asyncRecorder) Send(_ context.Context, evs []*event.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked = append(a.acked, evs...)
	return nil
}

func (a *asyncRecorder) acker() {
	defer close(a.stopped)
	rng := rand.New(rand.NewSource(1))
	for {
		select {
		case <-a.stop:
			return
		case <-a.kick:
		case <-time.After(5 * time.Millisecond):
		}
		a.mu.Lock()
		if len(a.outstanding) < a.ackAt {
			// Wait for more unless publishing paused (a liveness bound).
			a.mu.Unlock()
			select {
			case <-a.stop:
				return
			case <-a.kick:
				continue
			case <-time.After(5 * time.Millisecond):
			}
			a.mu.Lock()
		}
		batch := a.outstanding
		a.outstanding = nil
		a.mu.Unlock()
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		for _, p := range batch {
			a.settle(p, a.fail != nil && a.fail(p.call, p.evs))
		}
	}
}

func (a *asyncRecorder) settle(p asyncPub, fail bool) {
	a.mu.Lock()
	for _, e := range p.evs {
		delete(a.inFlight, e.Name)
		if !fail {
			a.acked = append(a.acked, e)
			if a.ackedRV[e.Name] == nil {
				a.ackedRV[e.Name] = map[string]bool{}
			}
			a.ackedRV[e.Name][e.ResourceVersion] = true
		}
	}
	a.mu.Unlock()
	<-a.window
	if fail {
		p.done(fmt.Errorf("nack of call %d", p.call))
		return
	}
	p.done(nil)
}

func (a *asyncRecorder) Close(context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.stopped
	a.mu.Lock()
	rest := a.outstanding
	a.outstanding = nil
	a.mu.Unlock()
	for _, p := range rest {
		a.settle(p, true)
	}
	return nil
}

// wasPublished reports whether any event of the object was handed over.
func (a *asyncRecorder) wasPublished(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.published[name]
}

func (a *asyncRecorder) wasAcked(name, rv string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ackedRV[name][rv]
}

func (a *asyncRecorder) snapshot() (acked []*event.Event, violations []string, maxOut int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*event.Event(nil), a.acked...), append([]string(nil), a.violations...), a.maxOut
}

// ackCheckingStore fails the test when a delivered state is recorded that
// the sink has not acknowledged.
type ackCheckingStore struct {
	*state.MemoryStore
	sink *asyncRecorder
	mu   sync.Mutex
	bad  []string
}

func (s *ackCheckingStore) Put(k state.Key, r state.Record) {
	// Sentinel records are not deliveries.
	if !isSentinel(k) && !s.sink.wasAcked(k.Name, r.ResourceVersion) {
		s.mu.Lock()
		s.bad = append(s.bad, k.Name+"@"+r.ResourceVersion)
		s.mu.Unlock()
	}
	s.MemoryStore.Put(k, r)
}

// With a window of 16 and acks that arrive out of order, a fifth of them
// failed: each object's events arrive in version order, no object is ever
// in flight twice, the delivered state moves only on ack, more objects
// are in flight than there are workers, and every object's last state
// (deletions included) is delivered.
func TestWindowOrderAndAcksOutOfOrder(t *testing.T) {
	sink := newAsyncRecorder(16, 8, func(call int, _ []*event.Event) bool { return call%5 == 0 })
	store := &ackCheckingStore{MemoryStore: state.NewMemoryStore(), sink: sink}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.Workers = 2
	h := startHarness(t, cfg, harnessOpts{sink: sink, stores: map[string]state.Store{"rec": store}})
	h.waitReady()
	const objects, versions = 120, 5
	final := map[string]string{}
	for v := 1; v <= versions; v++ {
		for i := 0; i < objects; i++ {
			u := h.src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": strconv.Itoa(v)}), false)
			final[name(i)] = u.GetResourceVersion()
		}
	}
	// Deleted only once published: an object deleted before any of its
	// versions was sent is never sent (level-based), and would prove no
	// deletion here.
	for i := 0; i < objects; i += 10 {
		for wait := time.Now().Add(30 * time.Second); !sink.wasPublished(name(i)); time.Sleep(time.Millisecond) {
			if time.Now().After(wait) {
				t.Fatalf("%s never published", name(i))
			}
		}
	}
	for i := 0; i < objects; i += 10 {
		h.src.remove(cmRes.GVR, "a", name(i), false)
		final[name(i)] = "deleted"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		acked, _, _ := sink.snapshot()
		last := map[string]*event.Event{}
		for _, e := range acked {
			last[e.Name] = e
		}
		ok := true
		for n, want := range final {
			e := last[n]
			if e == nil || (want == "deleted") != (e.Type == event.Deleted.Type()) || (want != "deleted" && e.ResourceVersion != want) {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every last state delivered; %d acked events", len(acked))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	acked, violations, maxOut := sink.snapshot()
	for _, v := range violations {
		t.Error(v)
	}
	store.mu.Lock()
	for _, b := range store.bad {
		t.Errorf("delivered state %s recorded before its ack", b)
	}
	store.mu.Unlock()
	lastRV := map[string]int{}
	for _, e := range acked {
		rv, err := strconv.Atoi(e.ResourceVersion)
		if err != nil {
			t.Fatalf("event %s: resourceVersion %q", e.ID, e.ResourceVersion)
		}
		// A deletion may carry the last delivered state's version.
		if rv < lastRV[e.Name] || (rv == lastRV[e.Name] && e.Type != event.Deleted.Type()) {
			t.Errorf("%s: version %d acknowledged after %d", e.Name, rv, lastRV[e.Name])
		}
		lastRV[e.Name] = rv
	}
	if maxOut <= cfg.Workers {
		t.Errorf("at most %d sends in flight with %d workers: the window is not used", maxOut, cfg.Workers)
	}
	for n, want := range final {
		rec, ok := store.MemoryStore.Get(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: n})
		if want == "deleted" {
			if ok {
				t.Errorf("%s: deleted but still recorded at %s", n, rec.ResourceVersion)
			}
			continue
		}
		if !ok || rec.ResourceVersion != want {
			t.Errorf("%s: recorded %q, want %s", n, rec.ResourceVersion, want)
		}
	}
	if r := h.ex.byName["rec"]; r.pending.len() != 0 {
		t.Errorf("%d keys still pending after everything was delivered", r.pending.len())
	}
}

// Stopping with acks outstanding waits for them (within shutdownTimeout):
// Run returns only after every publish was settled, so nothing touches the
// store afterwards and the unacknowledged keys stay undelivered.
func TestWindowCloseWithAcksOutstanding(t *testing.T) {
	// ackAt above anything sent: acks come only on the idle pause or Close.
	sink := newAsyncRecorder(64, 1000, func(int, []*event.Event) bool { return false })
	store := &ackCheckingStore{MemoryStore: state.NewMemoryStore(), sink: sink}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{sink: sink, stores: map[string]state.Store{"rec": store}})
	h.waitReady()
	for i := 0; i < 30; i++ {
		h.src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), false)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	r := h.ex.byName["rec"]
	if !r.waitSettled(5 * time.Second) {
		t.Fatal("Run returned with sends unsettled")
	}
	acked, violations, _ := sink.snapshot()
	for _, v := range violations {
		t.Error(v)
	}
	n := 0
	store.Range(func(k state.Key, _ state.Record) bool {
		if !isSentinel(k) {
			n++
		}
		return true
	})
	if n != len(acked) {
		t.Errorf("store holds %d records, the sink acknowledged %d events", n, len(acked))
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, b := range store.bad {
		t.Errorf("delivered state %s recorded before its ack", b)
	}
}

// Through a window whose first acks fail, the gap marker of a relist still
// reaches the sink before every recovered change of its scope.
func TestWindowGapMarkerPrecedesRecovered(t *testing.T) {
	src := newFakeSource(0)
	for i := 0; i < 40; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "1"}), true)
	}
	sink := newAsyncRecorder(16, 4, func(call int, _ []*event.Event) bool { return call <= 6 })
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	for i := 0; i < 40; i++ {
		src.apply(cmRes.GVR, cm("a", name(i), map[string]any{"v": "2"}), true)
	}
	src.expire(cmRes.GVR)
	deadline := time.Now().Add(20 * time.Second)
	for {
		acked, _, _ := sink.snapshot()
		if count(acked, event.Modified.Type()) >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recovered changes not delivered: %s", summary(acked))
		}
		time.Sleep(10 * time.Millisecond)
	}
	acked, violations, _ := sink.snapshot()
	for _, v := range violations {
		t.Error(v)
	}
	if acked[0].Type != event.TypeGap {
		t.Fatalf("first acknowledged event %s %s, want the gap marker", acked[0].Type, acked[0].Name)
	}
	if n := count(acked, event.TypeGap); n != 1 {
		t.Errorf("%d gap markers, want 1", n)
	}
	for _, e := range acked[1:] {
		if e.Type == event.Modified.Type() && !e.Data.(*event.ChangeData).Recovered {
			t.Errorf("%s not marked recovered", e.Name)
		}
	}
}

// RetryAfter(0) (a receiver's "Retry-After: 0") still backs off.
func TestRetryAfterZeroBacksOff(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	r0 := &recorder{fail: func(int, []*event.Event) error { return sinks.RetryAfter(errors.New("busy"), 0) }}
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"rec": r0}, clientFor: newFakeSource(0).client})
	if err != nil {
		t.Fatal(err)
	}
	ex.joinScopes(ex.rules[0], cmRes, []scopeID{{GVR: cmRes.GVR}}, false)
	s := ex.scopes[scopeID{GVR: cmRes.GVR}]
	u := cm("a", "x", nil)
	u.SetUID("u")
	u.SetResourceVersion("1")
	_ = s.informer.GetIndexer().Add(u)
	r := ex.runners[0]
	s.ready.Store(true)
	r.enqueue(keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}), nil)
	r.processNext(context.Background(), nil)
	if n := r.queue.NumRequeues(keyItem(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})); n != 1 {
		t.Fatalf("requeues = %d: a zero Retry-After did not go through the backoff", n)
	}
	r.queue.ShutDown()
}

// answeredSink is an AsyncSink whose publishes the test answers by hand,
// in the order they come (manualSink answers the latest).
type answeredSink struct {
	pubs chan answeredPub
}

type answeredPub struct {
	evs  []*event.Event
	done func(error)
}

func (m *answeredSink) Publish(_ context.Context, evs []*event.Event, done func(error)) error {
	m.pubs <- answeredPub{evs: evs, done: done}
	return nil
}

func (m *answeredSink) Send(ctx context.Context, evs []*event.Event) error {
	res := make(chan error, 1)
	if err := m.Publish(ctx, evs, func(err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *answeredSink) Close(context.Context) error { return nil }

var _ sinks.AsyncSink = (*answeredSink)(nil)

func (m *answeredSink) next(t *testing.T) answeredPub {
	t.Helper()
	select {
	case p := <-m.pubs:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published")
		return answeredPub{}
	}
}

// An object whose add was handed to the sink, and deleted while the add
// was in flight, gets its deletion whether the add is then acknowledged
// or fails.
func TestPublishedThenDeletedStillGetsItsDeletion(t *testing.T) {
	for _, tc := range []struct {
		name string
		ack  error
	}{{"acked", nil}, {"failed", errors.New("nack")}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &answeredSink{pubs: make(chan answeredPub, 16)}
			cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
			h := startHarness(t, cfg, harnessOpts{sink: sink})
			h.waitReady()
			h.src.apply(cmRes.GVR, cm("a", "x", nil), false)
			p := sink.next(t)
			if len(p.evs) != 1 || p.evs[0].Type != event.Added.Type() {
				t.Fatalf("first publish %s, want one added", summary(p.evs))
			}
			h.src.remove(cmRes.GVR, "a", "x", false)
			time.Sleep(100 * time.Millisecond) // the informer has the deletion
			p.done(tc.ack)
			for {
				p = sink.next(t)
				var del bool
				for _, e := range p.evs {
					del = del || e.Type == event.Deleted.Type()
				}
				if del {
					p.done(nil)
					return
				}
				p.done(nil) // e.g. the add again after the nack
			}
		})
	}
}
