// Package sinktest is the conformance suite every sink runs: order per
// object under concurrent senders, retry after a transient failure,
// errors after Close, close/flush, context cancellation and goroutine
// leaks; for sinks.AsyncSink also order per object under a window, ack
// failures in the middle of a window and Close with acks outstanding. A sink's own tests add what is particular to it (permanent errors
// of its protocol, auth, sizes).
package sinktest

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Harness connects the suite to one sink and its destination.
type Harness struct {
	// New returns a new sink writing to the destination.
	New func(t *testing.T) sinks.Sink
	// Received returns the ids of the events the destination holds, in
	// arrival order.
	Received func(t *testing.T) []string
	// Break makes the destination fail until Heal; nil when the destination
	// cannot fail on demand (the retry cases are then not run).
	Break, Heal func(t *testing.T)
	// AtMostOnce: what the destination acknowledged just before it broke
	// may still be lost (core NATS). The check of ack failures in the
	// middle of a window then asks only that the failed objects, retried,
	// arrive.
	AtMostOnce bool
}

// Event builds a modified event of object obj at version rv.
func Event(obj, rv int) *event.Event {
	uid := fmt.Sprintf("uid-%d", obj)
	name := fmt.Sprintf("obj-%d", obj)
	return &event.Event{
		SpecVersion: event.SpecVersion, ID: event.ID(uid, strconv.Itoa(rv), event.Modified),
		Source: "kubefeed/test", Type: event.Modified.Type(), Subject: "/api/v1/namespaces/ns/configmaps/" + name,
		Time: time.Unix(0, 0).UTC(), DataContentType: event.DataContentType, Cluster: "test",
		APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "ns", Name: name, UID: uid,
		ResourceVersion: strconv.Itoa(rv),
		Data: &event.ChangeData{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": "ns", "uid": uid, "resourceVersion": strconv.Itoa(rv)},
			"data":     map[string]any{"v": strconv.Itoa(rv)},
		}},
	}
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("OrderPerObjectUnderConcurrentSenders", func(t *testing.T) { orderPerObject(t, h) })
	t.Run("CloseFlushesAndLaterSendsFail", func(t *testing.T) { closeFlushes(t, h) })
	t.Run("CancelledContext", func(t *testing.T) { cancelled(t, h) })
	t.Run("NoGoroutineLeak", func(t *testing.T) { noLeak(t, h) })
	if h.Break != nil {
		t.Run("RetryAfterTransientFailure", func(t *testing.T) { retryAfterFailure(t, h) })
		t.Run("BrokenDestinationDoesNotHang", func(t *testing.T) { noHang(t, h) })
	}
	runAsync(t, h)
}

func orderPerObject(t *testing.T, h Harness) {
	s := h.New(t)
	const objects, versions, senders = 12, 25, 4
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				for o := w; o < objects; o += senders {
					if err := s.Send(context.Background(), []*event.Event{Event(o, v)}); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("send: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	ids := waitReceived(t, h, objects*versions)
	last := map[string]int{}
	for _, id := range ids {
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

func splitID(t *testing.T, id string) (string, int) {
	var obj, rv int
	var change string
	if _, err := fmt.Sscanf(id, "uid-%d.%d.%s", &obj, &rv, &change); err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return strconv.Itoa(obj), rv
}

func waitReceived(t *testing.T, h Harness, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ids := h.Received(t)
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination holds %d events, want %d", len(ids), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func closeFlushes(t *testing.T, h Harness) {
	s := h.New(t)
	before := len(h.Received(t))
	for v := 1; v <= 5; v++ {
		if err := s.Send(context.Background(), []*event.Event{Event(1000, v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitReceived(t, h, before+5)
	if err := s.Send(context.Background(), []*event.Event{Event(1000, 6)}); err == nil {
		t.Errorf("Send after Close succeeded")
	} else if sinks.IsPermanent(err) {
		// The exporter drops (or dead-letters) what a sink refuses for
		// good and moves on; a closed sink refused nothing: the event is
		// the next start's to send.
		t.Errorf("Send after Close failed permanently: %v, want a retryable error", err)
	}
}

func cancelled(t *testing.T, h Harness) {
	s := h.New(t)
	defer s.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Send(ctx, []*event.Event{Event(2000, 1)}); err == nil {
		t.Errorf("Send with a cancelled context succeeded")
	} else if sinks.IsPermanent(err) {
		t.Errorf("cancellation reported as permanent: %v", err)
	}
}

func noLeak(t *testing.T, h Harness) {
	received := len(h.Received(t))
	runtime.GC()
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		s := h.New(t)
		if err := s.Send(context.Background(), []*event.Event{Event(3000+i, 1)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The destination may take the events after Close returns (a core NATS
	// subscriber reads them from its own socket): wait for them, or the next
	// subtest counts one as its own.
	waitReceived(t, h, received+3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		// Three sinks created and closed: any per-sink goroutine left behind
		// shows up three times.
		if n < before+3 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after three sinks were closed\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func retryAfterFailure(t *testing.T, h Harness) {
	s := h.New(t)
	defer s.Close(context.Background())
	before := len(h.Received(t))
	h.Break(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := s.Send(ctx, []*event.Event{Event(4000, 1)})
	cancel()
	h.Heal(t)
	if err == nil {
		t.Fatal("Send to a broken destination succeeded")
	}
	if sinks.IsPermanent(err) {
		t.Fatalf("transient failure reported as permanent: %v", err)
	}
	// The caller retries with the same event, as the queue would.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.Send(ctx, []*event.Event{Event(4000, 1)})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry after healing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids := waitReceived(t, h, before+1)
	for _, id := range ids[before:] {
		if id != Event(4000, 1).ID {
			t.Errorf("unexpected event %s after retry", id)
		}
	}
}

func noHang(t *testing.T, h Harness) {
	s := h.New(t)
	defer s.Close(context.Background())
	h.Break(t)
	defer h.Heal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, []*event.Event{Event(5000, 1)}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Send to a broken destination succeeded")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Send ignored its context deadline for 15s")
	}
}
