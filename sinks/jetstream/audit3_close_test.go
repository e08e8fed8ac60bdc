package jetstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3ConcurrentPublishAndClose: 8 goroutines publish batches of
// 1-3 events while Close runs with a short ctx. Every Publish that
// returned nil gets exactly one done before Close returns, none that
// returned an error gets one, the window is empty afterwards, the reader
// has stopped, and a Publish after Close fails.
func TestAudit3ConcurrentPublishAndClose(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.MaxPending = 16
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Config: cfg, Cluster: "test", ackTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		calls    = map[int]int{}
		accepted = map[int]bool{}
		started  atomic.Int64
		wg       sync.WaitGroup
		closed   = make(chan struct{})
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := g*1000 + i
				evs := make([]*event.Event, 1+i%3)
				for j := range evs {
					evs[j] = sinktest.Event(k, j+1)
				}
				pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
				err := s.Publish(pctx, evs, func(error) {
					mu.Lock()
					calls[k]++
					mu.Unlock()
				})
				pcancel()
				mu.Lock()
				accepted[k] = err == nil
				mu.Unlock()
				if started.Add(1) == 300 {
					close(closed)
				}
			}
		}()
	}
	<-closed
	cctx, ccancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	snapshot := map[int]int{}
	for k, v := range calls {
		snapshot[k] = v
	}
	mu.Unlock()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for k, ok := range accepted {
		switch {
		case ok && calls[k] != 1:
			t.Errorf("publish %d: accepted, done called %d times", k, calls[k])
		case !ok && calls[k] != 0:
			t.Errorf("publish %d: refused, done called %d times", k, calls[k])
		case ok && snapshot[k] != 1:
			// handed over before Close marked the sink closed
			t.Errorf("publish %d: done not called before Close returned", k)
		}
	}
	if n := len(s.win.slots); n != 0 {
		t.Errorf("%d window slots held after Close", n)
	}
	if n := s.acks.waiting(); n != 0 {
		t.Errorf("%d messages still in the ack table after Close", n)
	}
	select {
	case <-s.acks.stop:
	default:
		t.Error("the ack reader was not stopped")
	}
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 1)}, func(error) { t.Error("done after Close") }); err == nil {
		t.Error("publish after Close succeeded")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
