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

// dest6 is an in-memory destination. late: what a sink sends lands 30 ms
// after Send returned (in order), as a core NATS subscriber reads it from
// its own socket.
type dest6 struct {
	mu      sync.Mutex
	ids     []string
	broken  bool
	late    bool
	pending chan late6
}

type late6 struct {
	id string
	at time.Time
}

func newDest6(t *testing.T, late bool) *dest6 {
	d := &dest6{late: late, pending: make(chan late6, 4096)}
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

func (d *dest6) deliver(id string) {
	if d.late {
		d.pending <- late6{id, time.Now().Add(30 * time.Millisecond)}
		return
	}
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
}

// sink6 sends to a dest6. stray: the first send after a failure also
// delivers an event nobody sent.
type sink6 struct {
	d      *dest6
	stray  bool
	mu     sync.Mutex
	failed bool
	closed bool
}

func (s *sink6) Send(ctx context.Context, evs []*event.Event) error {
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

func (s *sink6) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func harness6(t *testing.T, late, stray bool) Harness {
	d := newDest6(t, late)
	set := func(b bool) func(*testing.T) {
		return func(*testing.T) { d.mu.Lock(); d.broken = b; d.mu.Unlock() }
	}
	return Harness{
		New: func(*testing.T) sinks.Sink { return &sink6{d: d, stray: stray} },
		Received: func(*testing.T) []string {
			d.mu.Lock()
			defer d.mu.Unlock()
			return append([]string(nil), d.ids...)
		},
		Break: set(true), Heal: set(false),
	}
}

// TestAudit6Conformance: a sink whose destination gets each event 30 ms
// after Send returned passes the suite (NoGoroutineLeak waits for its
// three events, so none lands in RetryAfterTransientFailure). Run by
// TestAudit6SuiteCatchesAStrayEvent with AUDIT6_STRAY=1: a sink that
// delivers an event nobody sent when it recovers.
func TestAudit6Conformance(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "prompt", true: "late"}[late], func(t *testing.T) {
			Run(t, harness6(t, late, os.Getenv("AUDIT6_STRAY") == "1"))
		})
	}
}

// TestAudit6SuiteCatchesAStrayEvent: with the wait NoGoroutineLeak added,
// RetryAfterTransientFailure still fails a sink that delivers an
// unexpected event after its retry, whether the destination gets events
// at once or late.
func TestAudit6SuiteCatchesAStrayEvent(t *testing.T) {
	if os.Getenv("AUDIT6_STRAY") == "1" {
		return // the child runs TestAudit6Conformance only
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAudit6Conformance$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "AUDIT6_STRAY=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a sink that delivers a stray event:\n%s", out)
	}
	for _, sub := range []string{"prompt", "late"} {
		if !strings.Contains(string(out), "--- FAIL: TestAudit6Conformance/"+sub+"/RetryAfterTransientFailure") {
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
