package sinks

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

type okSink struct{ sent, closed atomic.Int64 }

func (s *okSink) Send(_ context.Context, evs []*event.Event) error {
	s.sent.Add(int64(len(evs)))
	return nil
}
func (s *okSink) Close(context.Context) error { s.closed.Add(1); return nil }

// A sink that cannot be opened fails sends retryably (never permanently:
// nothing is dropped) and says why, until a later attempt opens it.
func TestDeferredOpensLater(t *testing.T) {
	var attempts atomic.Int64
	inner := &okSink{}
	d := NewDeferred("js", errors.New("stream KUBEFEED not found"), func(context.Context) (Sink, error) {
		if attempts.Add(1) < 3 {
			return nil, errors.New("stream KUBEFEED not found")
		}
		return inner, nil
	}, DeferredOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	err := d.Send(context.Background(), []*event.Event{{ID: "1"}})
	if err == nil || IsPermanent(err) || !errors.Is(err, errNotOpen) {
		t.Fatalf("send before open: %v, want a retryable errNotOpen", err)
	}
	if ok, why := d.Health(); ok || why == "" {
		t.Fatalf("Health = %v %q before open", ok, why)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := d.Health(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never opened")
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Send(context.Background(), []*event.Event{{ID: "2"}}); err != nil || inner.sent.Load() != 1 {
		t.Fatalf("send after open: %v, sent %d", err, inner.sent.Load())
	}
	if err := d.Close(context.Background()); err != nil || inner.closed.Load() != 1 {
		t.Fatalf("close: %v, closed %d", err, inner.closed.Load())
	}
}

// Close stops the retries of a sink that never opens, promptly.
func TestDeferredCloseWhileRetrying(t *testing.T) {
	d := NewDeferred("js", errors.New("down"), func(context.Context) (Sink, error) { return nil, errors.New("down") }, DeferredOptions{MinBackoff: time.Hour})
	done := make(chan error, 1)
	go func() { done <- d.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the retry")
	}
}
