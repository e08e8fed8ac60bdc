package sinktest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// memDest is an in-memory destination. late: what a sink sends lands 30 ms
// after Send returned (in order), as a core NATS subscriber reads it from
// its own socket.
type memDest struct {
	mu      sync.Mutex
	ids     []string
	broken  bool
	late    bool
	pending chan lateID
}

type lateID struct {
	id string
	at time.Time
}

func newMemDest(t *testing.T, late bool) *memDest {
	d := &memDest{late: late, pending: make(chan lateID, 4096)}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case l := <-d.pending:
				time.Sleep(time.Until(l.at))
				d.mu.Lock()
				d.ids = append(d.ids, l.id)
				d.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return d
}

func (d *memDest) deliver(id string) {
	if d.late {
		d.pending <- lateID{id, time.Now().Add(30 * time.Millisecond)}
		return
	}
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
}

// memSink sends to a memDest. stray: the first send after a failure also
// delivers an event nobody sent.
type memSink struct {
	d      *memDest
	stray  bool
	mu     sync.Mutex
	failed bool
	closed bool
}

func (s *memSink) Send(ctx context.Context, evs []*event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("closed")
	}
	s.d.mu.Lock()
	broken := s.d.broken
	s.d.mu.Unlock()
	if broken {
		s.failed = true
		return errors.New("destination broken")
	}
	for _, e := range evs {
		s.d.deliver(e.ID)
	}
	if s.stray && s.failed {
		s.d.deliver(Event(9999, 1).ID)
		s.failed = false
	}
	return nil
}

func (s *memSink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func memHarness(t *testing.T, late, stray bool) Harness {
	d := newMemDest(t, late)
	set := func(b bool) func(*testing.T) {
		return func(*testing.T) { d.mu.Lock(); d.broken = b; d.mu.Unlock() }
	}
	return Harness{
		New: func(*testing.T) sinks.Sink { return &memSink{d: d, stray: stray} },
		Received: func(*testing.T) []string {
			d.mu.Lock()
			defer d.mu.Unlock()
			return append([]string(nil), d.ids...)
		},
		Break: set(true), Heal: set(false),
	}
}

// TestSuitePassesAnInMemorySink: a sink whose destination gets each
// event at once, or 30 ms after Send returned, passes the suite
// (NoGoroutineLeak waits for its three events, so none lands in
// RetryAfterTransientFailure). Run by TestSuiteCatchesAStrayEvent with
// SINKTEST_STRAY=1: a sink that delivers an event nobody sent when it
// recovers.
func TestSuitePassesAnInMemorySink(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "prompt", true: "late"}[late], func(t *testing.T) {
			Run(t, memHarness(t, late, os.Getenv("SINKTEST_STRAY") == "1"))
		})
	}
}

// TestSuiteCatchesAStrayEvent: RetryAfterTransientFailure fails a sink
// that delivers an unexpected event after its retry, whether the
// destination gets events at once or late (the wait for late events in
// NoGoroutineLeak, which runs before it, does not hide the stray one).
func TestSuiteCatchesAStrayEvent(t *testing.T) {
	if os.Getenv("SINKTEST_STRAY") == "1" {
		return // the child runs TestSuitePassesAnInMemorySink only
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSuitePassesAnInMemorySink$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SINKTEST_STRAY=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a sink that delivers a stray event:\n%s", out)
	}
	for _, sub := range []string{"prompt", "late"} {
		if !strings.Contains(string(out), "--- FAIL: TestSuitePassesAnInMemorySink/"+sub+"/RetryAfterTransientFailure") {
			t.Errorf("%s: RetryAfterTransientFailure did not fail", sub)
		}
	}
	if n := strings.Count(string(out), "unexpected event "+Event(9999, 1).ID+" after retry"); n != 2 {
		t.Errorf("%d reports of the stray event, want 2:\n%s", n, out)
	}
	if strings.Count(string(out), "--- FAIL") != 5 { // the two retry subtests, their parents and the test
		t.Errorf("other subtests failed too:\n%s", out)
	}
}
