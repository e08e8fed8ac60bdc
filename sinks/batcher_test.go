package sinks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// never is a linger that does not end within a test: requests are sent
// only when full, alone, or at Close.
const never = time.Hour

// object returns n events of the object named uid (ids uid-0, uid-1, …).
func object(uid string, n int) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{ID: fmt.Sprintf("%s-%d", uid, i), UID: uid}
	}
	return evs
}

// recorder is a BatchSend that records each request as the uids of its
// entries ("uid" or "uid!" for an Alone entry); answer, when set, gives
// the outcome.
type recorder struct {
	mu       sync.Mutex
	requests [][]string
	answer   func(ctx context.Context, entries []BatchEntry) []error
}

func (r *recorder) send(ctx context.Context, entries []BatchEntry) []error {
	var req []string
	for _, e := range entries {
		name := e.Events[0].UID
		if e.Alone {
			name += "!"
		}
		req = append(req, name)
	}
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.mu.Unlock()
	if r.answer != nil {
		return r.answer(ctx, entries)
	}
	return nil
}

func (r *recorder) got() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// outcome collects one done's error.
type outcome chan error

func (o outcome) done(err error) { o <- err }

func (o outcome) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-o:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: done never called", what)
		return nil
	}
}

// publish publishes and fails the test when Publish fails.
func publish(t *testing.T, b *Batcher, evs []*event.Event) outcome {
	t.Helper()
	o := make(outcome, 1)
	if err := b.Publish(context.Background(), evs, o.done); err != nil {
		t.Fatalf("publish %s: %v", evs[0].UID, err)
	}
	return o
}

// A request not full is sent once linger has passed, without Close.
func TestBatcherLingerFlush(t *testing.T) {
	rec := &recorder{}
	b := NewBatcher(BatcherOptions{Batch: 100, Linger: time.Millisecond, MaxInFlight: 2, Send: rec.send})
	defer b.Close(context.Background())
	a := publish(t, b, object("a", 2))
	if err := a.wait(t, "a"); err != nil {
		t.Fatalf("a: %v", err)
	}
	if got := rec.got(); len(got) != 1 || !slices.Equal(got[0], []string{"a"}) {
		t.Fatalf("requests %v, want [[a]]", got)
	}
}

// Objects collect until the next one would overflow the batch or the
// batch is full; then the request goes without waiting for linger.
func TestBatcherBatchSizeFlush(t *testing.T) {
	rec := &recorder{}
	b := NewBatcher(BatcherOptions{Batch: 4, Linger: never, MaxInFlight: 1, Send: rec.send})
	outs := []outcome{
		publish(t, b, object("a", 1)),
		publish(t, b, object("b", 2)),
		publish(t, b, object("c", 1)), // 4 events: full
	}
	for i, o := range outs {
		if err := o.wait(t, fmt.Sprint(i)); err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
	}
	d := publish(t, b, object("d", 3))
	e := publish(t, b, object("e", 2)) // 5 > 4: d goes alone, e waits
	if err := d.wait(t, "d"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.got(), [][]string{{"a", "b", "c"}, {"d"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	select {
	case err := <-e:
		t.Fatalf("e sent before its batch was full or closed: %v", err)
	default:
	}
	b.Close(context.Background())
	if err := e.wait(t, "e"); err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); len(got) != 3 || !slices.Equal(got[2], []string{"e"}) {
		t.Fatalf("requests %v, want e sent by Close", got)
	}
}

// An object with more events than a batch is a request of its own, sent
// at once (the callback splits it as its destination needs); what was
// collected before it goes first, in a request without it.
func TestBatcherObjectLargerThanBatch(t *testing.T) {
	rec := &recorder{}
	b := NewBatcher(BatcherOptions{Batch: 2, Linger: never, MaxInFlight: 4, Send: rec.send})
	defer b.Close(context.Background())
	big := publish(t, b, object("big", 5))
	if err := big.wait(t, "big"); err != nil {
		t.Fatal(err)
	}
	small := publish(t, b, object("small", 1))
	huge := publish(t, b, object("huge", 3))
	for _, o := range []outcome{small, huge} {
		if err := o.wait(t, "small/huge"); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.got()
	slices.SortFunc(got, func(x, y []string) int { return strings.Compare(x[0], y[0]) })
	if want := [][]string{{"big"}, {"huge"}, {"small"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("requests %v, want %v", got, want)
	}
}

// Close sends what was collected, waits for the requests in flight until
// its ctx ends, then cancels them: the one in flight fails with its
// callback's error, the one still waiting for a request slot with
// Closed; every done is called when Close returns, and Publish fails for
// good afterwards.
func TestBatcherCloseDrainsUntilDeadline(t *testing.T) {
	errShut := errors.New("test sink: closed")
	inFlight := make(chan struct{})
	rec := &recorder{answer: func(ctx context.Context, entries []BatchEntry) []error {
		close(inFlight) // only the first request is ever sent
		<-ctx.Done()
		return []error{fmt.Errorf("sending: %w", ctx.Err())}
	}}
	// Batch 2 of objects of 2 events: each is a request, and the window
	// has room for a second object.
	b := NewBatcher(BatcherOptions{Batch: 2, Linger: never, MaxInFlight: 1, Send: rec.send, Closed: errShut})
	a := publish(t, b, object("a", 2))
	<-inFlight
	w := publish(t, b, object("w", 2))
	waitUntil(t, "w waits for a request slot", b.requests.Waiting)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	b.Close(ctx)
	for name, o := range map[string]outcome{"a": a, "w": w} {
		select {
		case err := <-o:
			want := errShut
			if name == "a" {
				want = context.Canceled
			}
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", name, err, want)
			}
		default:
			t.Errorf("%s: done not called when Close returned", name)
		}
	}
	err := b.Publish(context.Background(), object("late", 1), func(error) { t.Error("late: done called") })
	if !errors.Is(err, errShut) || IsPermanent(err) {
		t.Fatalf("publish after Close: %v, want %v, retryable", err, errShut)
	}
}

// Close with time enough waits for every request: the collected one is
// sent and answered before it returns.
func TestBatcherCloseDrains(t *testing.T) {
	rec := &recorder{}
	b := NewBatcher(BatcherOptions{Batch: 10, Linger: never, MaxInFlight: 1, Send: rec.send})
	a := publish(t, b, object("a", 1))
	b.Close(context.Background())
	select {
	case err := <-a:
		if err != nil {
			t.Fatalf("a: %v", err)
		}
	default:
		t.Fatal("a: done not called when Close returned")
	}
	if err := b.Publish(context.Background(), object("late", 1), nil); !errors.Is(err, ErrBatcherClosed) || IsPermanent(err) {
		t.Fatalf("publish after Close: %v, want %v, retryable", err, ErrBatcherClosed)
	}
}

// A Publish waiting for the send window (Batch×MaxInFlight objects in
// flight) ends with its ctx, hands nothing over and never calls done;
// one waiting when Close comes fails for good.
func TestBatcherPublishWaitingForWindow(t *testing.T) {
	release := make(chan struct{})
	rec := &recorder{answer: func(context.Context, []BatchEntry) []error {
		<-release
		return nil
	}}
	b := NewBatcher(BatcherOptions{Batch: 1, Linger: never, MaxInFlight: 1, Send: rec.send})
	a := publish(t, b, object("a", 1))

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		res <- b.Publish(ctx, object("b", 1), func(error) { t.Error("b: done called") })
	}()
	waitUntil(t, "b waits for the window", b.keys.Waiting)
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for the send window") {
		t.Fatalf("b: %v, want the window wait cancelled", err)
	}

	go func() {
		res <- b.Publish(context.Background(), object("c", 1), func(error) { t.Error("c: done called") })
	}()
	waitUntil(t, "c waits for the window", b.keys.Waiting)
	closed := make(chan struct{})
	go func() { b.Close(context.Background()); close(closed) }()
	if err := <-res; !errors.Is(err, ErrBatcherClosed) || IsPermanent(err) {
		t.Fatalf("c: %v, want %v, retryable", err, ErrBatcherClosed)
	}
	close(release)
	if err := a.wait(t, "a"); err != nil {
		t.Fatal(err)
	}
	<-closed
	if got := rec.got(); len(got) != 1 {
		t.Fatalf("requests %v, want a's only", got)
	}
}

// The callback's answer: nil or one error for every entry, one per entry,
// and a count that fits neither, which fails every entry (none may pass
// for delivered).
func TestBatcherOutcomes(t *testing.T) {
	errA, errC := errors.New("a refused"), errors.New("c refused")
	tests := []struct {
		name   string
		answer []error
		want   []error // per entry; nil entries want nil
		bad    bool    // every entry wants a non-nil error
	}{
		{name: "nil", answer: nil, want: []error{nil, nil, nil}},
		{name: "one for all", answer: []error{errA}, want: []error{errA, errA, errA}},
		{name: "per entry", answer: []error{errA, nil, errC}, want: []error{errA, nil, errC}},
		{name: "wrong count", answer: []error{nil, nil}, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{answer: func(context.Context, []BatchEntry) []error { return tt.answer }}
			b := NewBatcher(BatcherOptions{Batch: 3, Linger: never, MaxInFlight: 1, Send: rec.send})
			defer b.Close(context.Background())
			outs := []outcome{publish(t, b, object("a", 1)), publish(t, b, object("b", 1)), publish(t, b, object("c", 1))}
			for i, o := range outs {
				err := o.wait(t, fmt.Sprint(i))
				switch {
				case tt.bad:
					if err == nil || !strings.Contains(err.Error(), "2 outcomes for 3 entries") {
						t.Errorf("entry %d: %v, want the count mismatch", i, err)
					}
				case err != tt.want[i]:
					t.Errorf("entry %d: %v, want %v", i, err, tt.want[i])
				}
			}
			if got := rec.got(); len(got) != 1 {
				t.Fatalf("requests %v, want one", got)
			}
		})
	}
}

// An object Alone says so goes in a request of its own at once, marked
// Alone, and does not flush or join what is collected.
func TestBatcherAlone(t *testing.T) {
	rec := &recorder{}
	b := NewBatcher(BatcherOptions{
		Batch: 10, Linger: never, MaxInFlight: 2, Send: rec.send,
		Alone: func(evs []*event.Event) bool { return evs[0].UID == "x" },
	})
	a := publish(t, b, object("a", 1))
	x := publish(t, b, object("x", 1))
	if err := x.wait(t, "x"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.got(), [][]string{{"x!"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	c := publish(t, b, object("c", 1))
	b.Close(context.Background())
	for _, o := range []outcome{a, c} {
		if err := o.wait(t, "a/c"); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := rec.got(), [][]string{{"x!"}, {"a", "c"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("requests %v, want %v", got, want)
	}
}
