package sinktest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// runAsync checks the AsyncSink contract (sinks/async.go) for sinks that
// implement it.
func runAsync(t *testing.T, h Harness) {
	if _, ok := h.New(t).(sinks.AsyncSink); !ok {
		return
	}
	t.Run("Async/OrderPerObjectUnderWindow", func(t *testing.T) { asyncOrder(t, h) })
	t.Run("Async/CloseWithAcksOutstanding", func(t *testing.T) { asyncClose(t, h) })
	if h.Break != nil {
		t.Run("Async/AckFailuresMidWindow", func(t *testing.T) { asyncFailMidWindow(t, h) })
	}
}

// tracker publishes through an AsyncSink the way the exporter does: one
// publish per object outstanding at a time, and it checks that every done
// is called exactly once.
type tracker struct {
	t     *testing.T
	s     sinks.AsyncSink
	mu    sync.Mutex
	calls map[int]int // publish number → done calls
	next  int
	wg    sync.WaitGroup
}

func newTracker(t *testing.T, s sinks.Sink) *tracker {
	return &tracker{t: t, s: s.(sinks.AsyncSink), calls: map[int]int{}}
}

// publish hands ev over; result receives the outcome once.
func (tr *tracker) publish(ctx context.Context, evs []*event.Event, result func(error)) error {
	tr.mu.Lock()
	tr.next++
	n := tr.next
	tr.mu.Unlock()
	tr.wg.Add(1)
	err := tr.s.Publish(ctx, evs, func(err error) {
		tr.mu.Lock()
		tr.calls[n]++
		again := tr.calls[n] > 1
		tr.mu.Unlock()
		if again {
			tr.t.Errorf("done of publish %d called again (%v)", n, err)
			return
		}
		defer tr.wg.Done()
		result(err)
	})
	if err != nil {
		tr.wg.Done()
	}
	return err
}

// asyncOrder keeps many objects in flight at once, each publishing its
// next version only after the previous one's done: every version of every
// object arrives, each object's in order.
func asyncOrder(t *testing.T, h Harness) {
	s := h.New(t)
	tr := newTracker(t, s)
	const objects, versions = 40, 10
	before := len(h.Received(t))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for o := 0; o < objects; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				res := make(chan error, 1)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tr.publish(ctx, []*event.Event{Event(6000+o, v)}, func(err error) { res <- err })
				cancel()
				if err == nil {
					err = <-res
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("object %d version %d: %v", o, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if failed.Load() > 0 {
		return
	}
	ids := waitReceived(t, h, before+objects*versions)
	last := map[string]int{}
	for _, id := range ids[before:] {
		obj, rv := splitID(t, id)
		if rv <= last[obj] {
			t.Fatalf("object %s: version %d arrived after %d", obj, rv, last[obj])
		}
		last[obj] = rv
	}
	if len(last) != objects {
		t.Errorf("got versions of %d objects, want %d", len(last), objects)
	}
}

// asyncClose closes with publishes outstanding: when Close returns, every
// done was called once, and what was acknowledged is at the destination.
func asyncClose(t *testing.T, h Harness) {
	s := h.New(t)
	tr := newTracker(t, s)
	before := len(h.Received(t))
	var acked, refused atomic.Int64
	var handed int
	for o := 0; o < 50; o++ {
		if err := tr.publish(context.Background(), []*event.Event{Event(7000+o, 1)}, func(err error) {
			switch {
			case err == nil:
				acked.Add(1)
			case sinks.IsPermanent(err):
				refused.Add(1)
			}
		}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		handed++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	tr.mu.Lock()
	called := len(tr.calls)
	tr.mu.Unlock()
	if called != handed {
		t.Fatalf("Close returned with %d of %d dones called", called, handed)
	}
	if n := acked.Load(); n > 0 {
		waitReceived(t, h, before+int(n))
	}
	// What Close gave up on was refused by nobody: the exporter drops (or
	// dead-letters) a permanent failure, and these are the next start's.
	if n := refused.Load(); n > 0 {
		t.Errorf("%d publishes outstanding at Close failed permanently, want retryable errors", n)
	}
	err := tr.publish(context.Background(), []*event.Event{Event(7999, 1)}, func(err error) {
		if err != nil && sinks.IsPermanent(err) {
			t.Errorf("Publish after Close answered with a permanent error: %v", err)
		}
	})
	switch {
	case err == nil:
		t.Errorf("Publish after Close succeeded")
	case sinks.IsPermanent(err):
		t.Errorf("Publish after Close failed permanently: %v, want a retryable error", err)
	}
}

// asyncFailMidWindow breaks the destination while a window of publishes
// is outstanding: every publish is answered, and retrying just the failed
// ones (as the exporter does) delivers every object; nothing is lost.
func asyncFailMidWindow(t *testing.T, h Harness) {
	s := h.New(t)
	defer s.Close(context.Background())
	tr := newTracker(t, s)
	before := len(h.Received(t))
	const objects = 60
	var mu sync.Mutex
	failed := map[int]bool{}
	fail := func(o int) { mu.Lock(); failed[o] = true; mu.Unlock() }
	for o := 0; o < objects; o++ {
		if o == objects/2 {
			h.Break(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := tr.publish(ctx, []*event.Event{Event(8000+o, 1)}, func(err error) {
			if err != nil {
				if sinks.IsPermanent(err) {
					t.Errorf("object %d: ack failure reported as permanent: %v", o, err)
				}
				fail(o)
			}
		}); err != nil {
			fail(o)
		}
		cancel()
	}
	tr.wg.Wait()
	h.Heal(t)
	mu.Lock()
	retry := make([]int, 0, len(failed))
	for o := range failed {
		retry = append(retry, o)
	}
	mu.Unlock()
	if len(retry) == 0 {
		t.Fatal("no publish failed while the destination was broken")
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(retry) > 0 {
		var still []int
		for _, o := range retry {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res := make(chan error, 1)
			err := tr.publish(ctx, []*event.Event{Event(8000+o, 1)}, func(err error) { res <- err })
			if err == nil {
				err = <-res
			}
			cancel()
			if err != nil {
				still = append(still, o)
			}
		}
		retry = still
		if len(retry) > 0 && time.Now().After(deadline) {
			t.Fatalf("%d objects still failing after healing", len(retry))
		}
		if len(retry) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	want := func(o int) bool { return !h.AtMostOnce || failed[o] }
	have := map[string]bool{}
	// Wait for the ids themselves, not a count: at most once, other
	// objects may or may not arrive, and would fill a count early.
	deadline = time.Now().Add(30 * time.Second)
	for {
		for _, id := range h.Received(t)[before:] {
			have[id] = true
		}
		missing := 0
		for o := 0; o < objects; o++ {
			if want(o) && !have[Event(8000+o, 1).ID] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for o := 0; o < objects; o++ {
		if !want(o) {
			continue
		}
		if id := Event(8000+o, 1).ID; !have[id] {
			t.Errorf("object %d lost: %s not at the destination", o, id)
		}
	}
}
