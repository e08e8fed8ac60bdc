package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// blockingSink records sends; a send with block set waits for its ctx and
// calls the cancellation permanent, as a careless sink might.
type blockingSink struct {
	mu      sync.Mutex
	sent    int
	closed  bool
	block   bool
	entered chan struct{}
}

func (s *blockingSink) Send(ctx context.Context, evs []*event.Event) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block {
		close(s.entered)
		<-ctx.Done()
		return sinks.Permanent(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent += len(evs)
	return nil
}

func (s *blockingSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func TestFencedSink(t *testing.T) {
	inner := &blockingSink{entered: make(chan struct{})}
	abortCtx, abort := context.WithCancel(context.Background())
	defer abort()
	s := fence(map[string]sinks.Sink{"x": inner}, abortCtx)["x"]
	evs := []*event.Event{{ID: "a"}, {ID: "b"}}

	if err := s.Send(context.Background(), evs); err != nil {
		t.Fatalf("send before abort: %v", err)
	}
	if inner.sent != 2 {
		t.Fatalf("sink got %d events, want 2", inner.sent)
	}

	// A send in flight when the Lease is lost is cancelled, and reported
	// retryable although the sink called it permanent.
	inner.mu.Lock()
	inner.block = true
	inner.mu.Unlock()
	res := make(chan error, 1)
	go func() { res <- s.Send(context.Background(), evs) }()
	await(t, inner.entered, "the blocked send")
	abort()
	err := await(t, res, "the in-flight send after abort")
	if !errors.Is(err, errFenced) || sinks.IsPermanent(err) {
		t.Errorf("in-flight send after abort: %v, want the retryable errFenced", err)
	}

	// Later sends never reach the sink.
	inner.mu.Lock()
	inner.block = false
	inner.mu.Unlock()
	if err := s.Send(context.Background(), evs); !errors.Is(err, errFenced) {
		t.Errorf("send after abort: %v, want errFenced", err)
	}
	if inner.sent != 2 {
		t.Errorf("sink got %d events after abort, want still 2", inner.sent)
	}
	if err := s.Close(context.Background()); err != nil || !inner.closed {
		t.Errorf("Close: %v, closed %v; want forwarded", err, inner.closed)
	}
}

// The fence shows the health of the sink behind it: a Deferred sink that
// is not open yet is reported through the fence, a plain sink is healthy.
func TestFencedSinkForwardsHealth(t *testing.T) {
	d := sinks.NewDeferred("js", errors.New("stream KUBEFEED not found"), func(context.Context) (sinks.Sink, error) {
		return nil, errors.New("stream KUBEFEED not found")
	}, sinks.DeferredOptions{MinBackoff: time.Hour})
	defer d.Close(context.Background())
	fenced := fence(map[string]sinks.Sink{"js": d, "plain": &blockingSink{}}, context.Background())
	h, ok := fenced["js"].(interface{ Health() (bool, string) })
	if !ok {
		t.Fatal("a fenced sink does not report health")
	}
	if ok, why := h.Health(); ok || !strings.Contains(why, "sink js not open") || !strings.Contains(why, "stream KUBEFEED not found") {
		t.Errorf("Health = %v %q, want not open with the reason", ok, why)
	}
	if ok, why := fenced["plain"].(interface{ Health() (bool, string) }).Health(); !ok {
		t.Errorf("plain sink: Health = %v %q, want healthy", ok, why)
	}
}
