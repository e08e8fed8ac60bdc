package deadletter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// picky delivers every event except the rejected ids, and fails
// retryably while broken.
type picky struct {
	mu        sync.Mutex
	reject    map[string]bool
	broken    bool
	delivered []string
	closed    bool
}

type statusErr struct{ code int }

func (e statusErr) Error() string   { return "rejected by the receiver" }
func (e statusErr) HTTPStatus() int { return e.code }

func (p *picky) Send(ctx context.Context, events []*event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return sinks.Permanent(errors.New("closed"))
	}
	if p.broken {
		return errors.New("receiver down")
	}
	for _, e := range events {
		if p.reject[e.ID] {
			return sinks.Permanent(statusErr{400})
		}
	}
	for _, e := range events {
		p.delivered = append(p.delivered, e.ID)
	}
	return nil
}

func (p *picky) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

func (p *picky) ids(*testing.T) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.delivered...)
}

func records(t *testing.T, path string) []deadletter.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadletter.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r deadletter.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestConformance(t *testing.T) {
	p := &picky{reject: map[string]bool{}}
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinks.Sink {
			p.mu.Lock()
			p.closed = false
			p.mu.Unlock()
			s, err := deadletter.Wrap(p, deadletter.Options{Name: "x", Path: filepath.Join(t.TempDir(), "dead.jsonl")})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Received: p.ids,
		Break:    func(*testing.T) { p.mu.Lock(); p.broken = true; p.mu.Unlock() },
		Heal:     func(*testing.T) { p.mu.Lock(); p.broken = false; p.mu.Unlock() },
	})
}

func TestRejectedEventsAreKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "dead.jsonl")
	e1, e2, e3 := sinktest.Event(1, 1), sinktest.Event(2, 1), sinktest.Event(3, 1)
	p := &picky{reject: map[string]bool{e2.ID: true}}
	s, err := deadletter.Wrap(p, deadletter.Options{Name: "hook", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), []*event.Event{e1, e2, e3})
	if !sinks.IsPermanent(err) || !errors.Is(err, sinks.ErrDeadLettered) || !strings.Contains(err.Error(), path) {
		t.Fatalf("send with a rejected event: %v, want permanent, dead-lettered, naming the file", err)
	}
	if got := p.ids(t); len(got) != 2 || got[0] != e1.ID || got[1] != e3.ID {
		t.Errorf("delivered %v, want the two accepted events", got)
	}
	rs := records(t, path)
	if len(rs) != 1 {
		t.Fatalf("%d records, want 1", len(rs))
	}
	r := rs[0]
	var ev struct{ ID string }
	if err := json.Unmarshal(r.Event, &ev); err != nil || ev.ID != e2.ID || r.ID != e2.ID || r.Status != 400 || r.Sink != "hook" || r.Reason != "rejected by the receiver" || r.Time.IsZero() {
		t.Errorf("record %+v (event id %q, %v)", r, ev.ID, err)
	}
	checkMode(t, path, 0o600)
	checkMode(t, dir, 0o700|os.ModeDir)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// After Close nothing is sent or kept, and the event is not refused
	// for good: it is the next start's.
	if err := s.Send(context.Background(), []*event.Event{e2}); err == nil || sinks.IsPermanent(err) || errors.Is(err, sinks.ErrDeadLettered) {
		t.Errorf("send after close: %v", err)
	}
	if n := len(records(t, path)); n != 1 {
		t.Errorf("%d records after a send on the closed sink, want 1", n)
	}
}

// TestUnwritableDeadLetterIsRetryable: when the dead-letter file cannot be
// written (a full disk: the path points to /dev/full), the send fails
// retryably, and the event is kept once the file can be written again.
func TestUnwritableDeadLetterIsRetryable(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("this test needs /dev/full: %v", err)
	}
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	e := sinktest.Event(1, 1)
	s, err := deadletter.Wrap(&picky{reject: map[string]bool{e.ID: true}}, deadletter.Options{Name: "hook", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for i := 0; i < 2; i++ {
		err = s.Send(context.Background(), []*event.Event{e})
		if err == nil || sinks.IsPermanent(err) || errors.Is(err, sinks.ErrDeadLettered) {
			t.Fatalf("disk full, try %d: %v, want a retryable error", i, err)
		}
	}
	// The disk has room again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), []*event.Event{e}); !errors.Is(err, sinks.ErrDeadLettered) {
		t.Fatalf("after healing: %v, want dead-lettered", err)
	}
	if rs := records(t, path); len(rs) != 1 || rs[0].ID != e.ID {
		t.Errorf("records %+v, want the event once", rs)
	}
	checkMode(t, path, 0o600)
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != want {
		t.Errorf("%s has mode %v, want %v", path, st.Mode(), want)
	}
}

// asyncPicky is picky with a window: Publish answers through done on a
// goroutine of its own, as a networked sink's ack reader does.
type asyncPicky struct{ picky }

func (p *asyncPicky) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	go func() { done(p.Send(context.Background(), events)) }()
	return nil
}

// Through a wrapped sink's window, a rejected publish is sorted out as
// Send does: the rejected event is kept, the good one delivered.
func TestPublishThroughWindowKeepsRejected(t *testing.T) {
	inner := &asyncPicky{picky{reject: map[string]bool{sinktest.Event(2, 1).ID: true}}}
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	s, err := deadletter.Wrap(inner, deadletter.Options{Name: "hook", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 1), sinktest.Event(2, 1)}, func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	err = <-res
	if !errors.Is(err, sinks.ErrDeadLettered) || !sinks.IsPermanent(err) {
		t.Fatalf("publish with a rejected event: %v, want a permanent dead-lettered error", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := inner.ids(t); len(got) != 1 || got[0] != sinktest.Event(1, 1).ID {
		t.Errorf("delivered %v, want only the good event", got)
	}
	if recs := records(t, path); len(recs) != 1 {
		t.Errorf("%d dead-letter records, want 1", len(recs))
	}
}
