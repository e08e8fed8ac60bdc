package jetstream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestTimeoutsFireWhenPublishesStop: the reader fires ack timeouts with
// no publish coming after the one whose ack is lost, whether the last
// publishes came close together (the busy poll) or not.
func TestTimeoutsFireWhenPublishesStop(t *testing.T) {
	for _, busy := range []bool{false, true} {
		a := newAcker("_INBOX.t", "KUBEFEED", 50*time.Millisecond, 16, func(int) {}, func() {})
		a.start(nil)
		o := newOutcomes()
		if busy {
			for i := 0; i < 5; i++ {
				_, first := handOver(a, "warm", o, "w")
				a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
			}
		}
		handOver(a, "lost", o, "e1")
		deadline := time.After(10 * time.Second)
		for len(o.get("lost")) == 0 {
			select {
			case <-o.calls:
			case <-deadline:
				a.halt()
				t.Fatalf("busy=%v: no timeout 10s after a lost ack (ack timeout 50ms)", busy)
			}
		}
		a.halt()
		if got := o.get("lost"); len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) {
			t.Errorf("busy=%v: done calls %v, want one timeout", busy, got)
		}
	}
}

// TestLostAckTimesOut: a message that reaches a subscriber but no stream
// gets no ack; it fails retryably after the ack timeout, and its retry,
// once a stream holds the subject, is delivered.
func TestLostAckTimesOut(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.Provision.Subjects = []string{"elsewhere.>"}
	nc, js := connect(t, srv.URL())
	swallow, err := nc.SubscribeSync("kubefeed.>") // takes the messages, never answers
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, cfg, 200*time.Millisecond)
	e := sinktest.Event(1, 1)
	err = s.Send(context.Background(), []*event.Event{e})
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, jetstream.ErrAsyncPublishTimeout) || !strings.Contains(err.Error(), e.ID) {
		t.Fatalf("send with the ack lost: %v, want a retryable timeout naming %s", err, e.ID)
	}
	if _, err := swallow.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the message did not go out: %v", err)
	}
	_ = swallow.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"elsewhere.>", "kubefeed.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if ids := streamIDs(t, srv.URL()); ids[e.ID] != 1 || len(ids) != 1 {
		t.Errorf("stream holds %v, want %s once", ids, e.ID)
	}
}

// TestServerRestartMidWindow: the server goes away with a window of
// publishes outstanding. Every publish ends (an error, or done with an
// error or nil), every failure is retryable, and after the restart the
// retries deliver every event exactly once (the ids de-duplicate what was
// stored although its ack was lost).
func TestServerRestartMidWindow(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.MaxPending = 64
	s := openSink(t, cfg, 5*time.Second)
	const n = 400
	var (
		mu     sync.Mutex
		failed []int
		calls  = map[int]int{}
		wg     sync.WaitGroup
	)
	fail := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if sinks.IsPermanent(err) {
			t.Errorf("event %d: permanent error %v", i, err)
		}
		failed = append(failed, i)
	}
	for i := 0; i < n; i++ {
		if i == n/4 {
			srv.Shutdown() // with acks outstanding
		}
		wg.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := s.Publish(ctx, []*event.Event{sinktest.Event(i, 1)}, func(err error) {
			defer wg.Done()
			mu.Lock()
			calls[i]++
			mu.Unlock()
			if err != nil {
				fail(i, err)
			}
		})
		cancel()
		if err != nil {
			wg.Done()
			fail(i, err)
		}
	}
	wg.Wait()
	for i, c := range calls {
		if c != 1 {
			t.Errorf("event %d: done called %d times", i, c)
		}
	}
	if len(failed) == 0 {
		t.Fatal("nothing failed: the server was not shut down mid-window")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, i := range failed {
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = s.Send(ctx, []*event.Event{sinktest.Event(i, 1)})
			cancel()
			if err == nil {
				break
			}
			if sinks.IsPermanent(err) {
				t.Fatalf("retry of %d: permanent error %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // reconnecting
		}
		if err != nil {
			t.Fatalf("retry of %d: %v", i, err)
		}
	}
	ids := streamIDs(t, srv.URL())
	for i := 0; i < n; i++ {
		if id := sinktest.Event(i, 1).ID; ids[id] != 1 {
			t.Errorf("%s stored %d times, want once", id, ids[id])
		}
	}
	if len(ids) != n {
		t.Errorf("stream holds %d ids, want %d", len(ids), n)
	}
}

// TestServerRestartWithConcurrentPublishers: 8 goroutines publish
// multi-event batches while the server stops and comes back. Each
// accepted publish gets exactly one done, every failure is retryable,
// and retrying each failed batch until it succeeds leaves every event in
// the stream exactly once.
func TestServerRestartWithConcurrentPublishers(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.MaxPending = 32
	s := openSink(t, cfg, 2*time.Second)
	type key struct{ g, i int }
	batch := func(k key) []*event.Event {
		evs := make([]*event.Event, 1+k.i%3)
		for j := range evs {
			evs[j] = sinktest.Event(k.g*1000+k.i, j+1)
		}
		return evs
	}
	var (
		mu     sync.Mutex
		calls  = map[key]int{}
		failed = map[key]bool{}
		wg     sync.WaitGroup
		acks   sync.WaitGroup
	)
	fail := func(k key, err error) {
		mu.Lock()
		defer mu.Unlock()
		if sinks.IsPermanent(err) {
			t.Errorf("%v: permanent error %v", k, err)
		}
		failed[k] = true
	}
	var stopOnce, startOnce sync.Once
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				k := key{g, i}
				if g == 0 && i == 20 {
					stopOnce.Do(srv.Shutdown)
				}
				if g == 0 && i == 40 {
					startOnce.Do(func() {
						if err := srv.Restart(); err != nil {
							t.Error(err)
						}
					})
				}
				acks.Add(1)
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				err := s.Publish(ctx, batch(k), func(err error) {
					defer acks.Done()
					mu.Lock()
					calls[k]++
					mu.Unlock()
					if err != nil {
						fail(k, err)
					}
				})
				cancel()
				if err != nil {
					acks.Done()
					fail(k, err)
				}
			}
		}()
	}
	wg.Wait()
	acks.Wait()
	for k, c := range calls {
		if c != 1 {
			t.Errorf("%v: done called %d times", k, c)
		}
	}
	if len(failed) == 0 {
		t.Fatal("nothing failed: the restart was not mid-window")
	}
	for k := range failed {
		var err error
		for attempt := 0; attempt < 200; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = s.Send(ctx, batch(k))
			cancel()
			if err == nil {
				break
			}
			if sinks.IsPermanent(err) {
				t.Fatalf("retry of %v: permanent error %v", k, err)
			}
			time.Sleep(20 * time.Millisecond) // reconnecting
		}
		if err != nil {
			t.Fatalf("retry of %v: %v", k, err)
		}
	}
	ids := streamIDs(t, srv.URL())
	want := 0
	for g := 0; g < 8; g++ {
		for i := 0; i < 60; i++ {
			for _, e := range batch(key{g, i}) {
				want++
				if ids[e.ID] != 1 {
					t.Errorf("%s stored %d times, want once", e.ID, ids[e.ID])
				}
			}
		}
	}
	if len(ids) != want {
		t.Errorf("stream holds %d ids, want %d", len(ids), want)
	}
}
