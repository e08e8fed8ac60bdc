package jetstream

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3RestartWithConcurrentPublishers: 8 goroutines publish
// multi-event batches while the server stops and comes back. Each
// accepted publish gets exactly one done, every failure is retryable,
// and retrying each failed batch until it succeeds leaves every event in
// the stream exactly once.
func TestAudit3RestartWithConcurrentPublishers(t *testing.T) {
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
