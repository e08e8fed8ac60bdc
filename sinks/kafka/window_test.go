package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// publisher drives Publish as the exporter does and checks that every
// done is called exactly once, and never for a publish that returned an
// error.
type publisher struct {
	t     *testing.T
	s     *kafka.Sink
	mu    sync.Mutex
	calls []int   // done calls per publish
	errs  []error // what each done got
	fails []bool  // the publish itself returned an error
}

// publish hands evs over; it returns the publish number and its error.
func (p *publisher) publish(ctx context.Context, evs []*event.Event, result func(error)) (int, error) {
	p.mu.Lock()
	n := len(p.calls)
	p.calls = append(p.calls, 0)
	p.errs = append(p.errs, nil)
	p.fails = append(p.fails, false)
	p.mu.Unlock()
	err := p.s.Publish(ctx, evs, func(err error) {
		p.mu.Lock()
		p.calls[n]++
		p.errs[n] = err
		again, after := p.calls[n] > 1, p.fails[n]
		p.mu.Unlock()
		if again || after {
			p.t.Errorf("publish %d: done called %d times, after Publish returned an error: %v (%v)", n, p.calls[n], after, err)
			return
		}
		if result != nil {
			result(err)
		}
	})
	if err != nil {
		p.mu.Lock()
		p.fails[n] = true
		p.mu.Unlock()
	}
	return n, err
}

// await publishes evs and waits for the outcome.
func (p *publisher) await(ctx context.Context, evs ...*event.Event) error {
	res := make(chan error, 1)
	if _, err := p.publish(ctx, evs, func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

// answer reports how often publish n's done was called, and with what.
func (p *publisher) answer(n int) (calls int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[n], p.errs[n]
}

// swallowProduce makes the broker read produce requests and never answer
// them; arrived is closed when the first one arrives. Every ack is then
// outstanding until the client gives the request up.
func swallowProduce(c *kfake.Cluster) (arrived chan struct{}) {
	arrived = make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() { close(arrived) })
		return nil, nil, true
	})
	return arrived
}

// The broker fails produce requests while a window of publishes is in
// flight: every publish is answered once, those that failed with a
// retryable error; retried as the exporter's queue does (the same events,
// the next version only after the previous one is acknowledged), every
// version of every object reaches the topic in order.
func TestBrokerFailureMidWindow(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 64
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	p := &publisher{t: t, s: s}
	const objects, versions = 48, 6
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	// The versions after the first wait for the fault: without it, they
	// could all be acknowledged before it was in place (the fault then
	// answered nothing, and the test tested no failure).
	faulted := make(chan struct{})
	for o := 0; o < objects; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				if v == 2 {
					<-faulted
				}
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := p.await(ctx, sinktest.Event(o, v))
					cancel()
					if err == nil {
						acked.Add(1)
						break
					}
					if sinks.IsPermanent(err) {
						t.Errorf("object %d version %d: permanent error %v", o, v, err)
						return
					}
					failed.Add(1)
					if attempt == 200 {
						t.Errorf("object %d version %d: still failing: %v", o, v, err)
						return
					}
					time.Sleep(10 * time.Millisecond) // the queue's backoff
				}
			}
		}()
	}
	// Fail produce requests once the window is busy, and heal once the
	// broker failed a few of them.
	for acked.Load() < objects {
		time.Sleep(time.Millisecond)
	}
	h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.UnknownServerError, Count: -1})
	close(faulted)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := h.Wait(ctx, 5)
	for err == nil && failed.Load() == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	h.Remove()
	wg.Wait()
	if err != nil {
		t.Fatalf("the fault answered %d produce requests: %v", h.Hits(), err)
	}
	if failed.Load() == 0 {
		t.Fatal("no publish failed while the broker failed produce requests: the test did not test a failure")
	}
	t.Logf("%d publishes failed and were retried", failed.Load())
	checkEveryVersion(t, kc.Addr(), objects, versions)
}

// Close with acks outstanding and a context that ends: every publish is
// answered exactly once before Close returns, with a retryable error, and
// Publish fails after it.
func TestCloseWithAcksOutstanding(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	arrived := swallowProduce(kc.Kfake())
	p := &publisher{t: t, s: s}
	const n = 40
	for o := 0; o < n; o++ {
		if _, err := p.publish(context.Background(), []*event.Event{sinktest.Event(o, 1)}, nil); err != nil {
			t.Fatalf("publish %d: %v", o, err)
		}
	}
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "not acknowledged") {
		t.Errorf("close with acks outstanding: %v, want an error naming them", err)
	}
	for i := 0; i < n; i++ {
		calls, err := p.answer(i)
		if calls != 1 || err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "closed") {
			t.Errorf("publish %d: %d done calls when Close returned, error %v; want one, retryable, saying the sink closed", i, calls, err)
		}
	}
	if _, err := p.publish(context.Background(), []*event.Event{sinktest.Event(99, 1)}, nil); err == nil || sinks.IsPermanent(err) {
		t.Errorf("publish after Close: %v, want a retryable error", err)
	}
}

// Acks arrive while Close gives up waiting for them: whichever comes
// first answers each publish, once, and Close returns only after every
// done returned.
func TestCloseRacingAcks(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	for round := 0; round < 10; round++ {
		s := newSink(t, sinkConfig(kc.Addr()))
		p := &publisher{t: t, s: s}
		const n = 30
		for o := 0; o < n; o++ {
			if _, err := p.publish(context.Background(), []*event.Event{sinktest.Event(o, round+1)}, func(error) {
				time.Sleep(100 * time.Microsecond) // a done that takes a moment
			}); err != nil {
				t.Fatalf("publish %d: %v", o, err)
			}
		}
		// The acks of the publishes just handed over are on their way.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Close(ctx)
		for i := 0; i < n; i++ {
			if calls, err := p.answer(i); calls != 1 || sinks.IsPermanent(err) {
				t.Errorf("round %d publish %d: %d done calls when Close returned (error %v), want one", round, i, calls, err)
			}
		}
	}
}

// A publish waiting for a full window returns its context's error when
// the context ends (also one waiting for its turn behind it), and its
// done is never called; Close then answers the publishes that held the
// window, once each.
func TestPublishBlockedOnFullWindowHonoursContext(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 2
	s := newSink(t, cfg)
	kc.Shutdown() // no ack comes: the window stays full
	p := &publisher{t: t, s: s}
	for o := 0; o < 2; o++ {
		if _, err := p.publish(context.Background(), []*event.Event{sinktest.Event(o, 1)}, nil); err != nil {
			t.Fatalf("publish %d: %v", o, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	blocked := make([]error, 2)
	for i := range blocked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, blocked[i] = p.publish(ctx, []*event.Event{sinktest.Event(10+i, 1)}, nil)
		}()
	}
	wg.Wait()
	for i, err := range blocked {
		if !errors.Is(err, context.DeadlineExceeded) || sinks.IsPermanent(err) {
			t.Errorf("blocked publish %d: %v, want the context's deadline error", i, err)
		}
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	_ = s.Close(cctx)
	for i := 0; i < 4; i++ {
		calls, err := p.answer(i)
		switch {
		case i < 2 && (calls != 1 || err == nil || sinks.IsPermanent(err)):
			t.Errorf("publish %d held the window: %d done calls, error %v; want one retryable error", i, calls, err)
		case i >= 2 && calls != 0:
			t.Errorf("publish %d returned an error, yet its done was called %d times", i, calls)
		}
	}
}

// Close ends a publish waiting for the window at once, with an error.
func TestCloseEndsAWaitForTheWindow(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 1
	s := newSink(t, cfg)
	kc.Shutdown()
	p := &publisher{t: t, s: s}
	if _, err := p.publish(context.Background(), []*event.Event{sinktest.Event(1, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := p.publish(context.Background(), []*event.Event{sinktest.Event(2, 1)}, nil)
		res <- err
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Close(ctx)
	if err := <-res; err == nil || sinks.IsPermanent(err) {
		t.Errorf("publish waiting for the window at Close: %v, want a retryable error", err)
	}
}

// A publish of more records than the window holds (a gap marker to every
// partition) waits for the whole window and goes through alone.
func TestPublishLargerThanTheWindow(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 2
	cfg.Provision.Partitions = 5
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	p := &publisher{t: t, s: s}
	batch := []*event.Event{gapEvent("configmaps -n ns", "configmaps", "ns"), sinktest.Event(1, 1), sinktest.Event(2, 1)}
	if err := p.await(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}
	if err := p.await(context.Background(), sinktest.Event(1, 2)); err != nil {
		t.Fatal(err)
	}
	if n := len(records(t, kc.Addr(), "kubefeed")); n != 8 {
		t.Errorf("topic holds %d records, want 5 gap copies and 3 events", n)
	}
	if st := s.Stats(); st.Produced != 8 || st.GapRecords != 5 {
		t.Errorf("stats %+v, want 8 produced, 5 gap records", st)
	}
}

// A publish without events is acknowledged at once, on the sink's
// goroutine, like any other.
func TestPublishOfNothing(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	p := &publisher{t: t, s: s}
	if err := p.await(context.Background()); err != nil {
		t.Errorf("publish of no events: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls, _ := p.answer(0); calls != 1 {
		t.Errorf("done called %d times, want once", calls)
	}
}

// Publishes race broker failures, permanent errors (an event too large
// without a dead-letter topic), gap markers wider than the window and
// publishes of nothing, on a window of 4: every done comes exactly once
// (the publisher checks), the window ends empty (a publish that needs all
// of it goes through), and Stats count each publish answered for good
// exactly once.
func TestWindowAccountsForEveryPublish(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 4
	cfg.MaxMessageBytes = 64 << 10
	cfg.Provision.Partitions = 3
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	p := &publisher{t: t, s: s}
	big := strings.Repeat("x", 100<<10)
	const objects, versions = 12, 8
	var produced, gaps, dropped, retried atomic.Int64
	// Fail produce requests on and off while they run. The first fault is
	// in place before any publish, so a fast run still meets failures.
	stop := make(chan struct{})
	faults := make(chan struct{})
	first := make(chan struct{})
	go func() {
		defer close(faults)
		for i := 0; ; i++ {
			h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{int32(i % 3)}, Err: kerr.UnknownServerError, Count: 2})
			if i == 0 {
				close(first)
			}
			time.Sleep(20 * time.Millisecond)
			h.Remove()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	<-first
	var wg sync.WaitGroup
	for o := 0; o < objects; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				var evs []*event.Event
				var recs, gapRecs, drops int64
				switch (o + v) % 5 {
				case 0: // a gap marker first: 3 records, the window is 4
					evs = append(evs, gapEvent(fmt.Sprintf("configmaps -n ns%d", o), "configmaps", "ns"))
					recs += 3
					gapRecs += 3
				case 1: // an event that can never be written, and one that can
					e := sinktest.Event(o, v)
					e.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
					e.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
					evs = append(evs, e)
					drops++
				case 2: // nothing
				}
				if (o+v)%5 != 2 {
					evs = append(evs, sinktest.Event(o, v))
					recs++
				}
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					res := make(chan error, 1)
					_, err := p.publish(ctx, evs, func(err error) { res <- err })
					cancel()
					if err == nil {
						err = <-res
					} else if !sinks.IsPermanent(err) {
						t.Errorf("object %d version %d: publish: %v", o, v, err)
						return
					}
					if err == nil || sinks.IsPermanent(err) {
						if err != nil && drops == 0 {
							t.Errorf("object %d version %d: permanent error %v", o, v, err)
						}
						if err == nil && drops > 0 {
							t.Errorf("object %d version %d: an event too large went through", o, v)
						}
						produced.Add(recs)
						gaps.Add(gapRecs)
						dropped.Add(drops)
						break
					}
					retried.Add(1)
					if attempt == 300 {
						t.Errorf("object %d version %d: still failing: %v", o, v, err)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-faults
	if retried.Load() == 0 {
		t.Error("no publish failed: the test did not test a failure")
	}
	t.Logf("%d attempts retried", retried.Load())
	// Every slot is back: a publish of the whole window goes through.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var four []*event.Event
	for o := 0; o < 4; o++ {
		four = append(four, sinktest.Event(100+o, 1))
	}
	if err := p.await(ctx, four...); err != nil {
		t.Fatalf("a publish of the whole window after the others: %v (slots leaked?)", err)
	}
	want := kafkaStats{Produced: produced.Load() + 4, GapRecords: gaps.Load(), Dropped: dropped.Load()}
	if st := s.Stats(); st.Produced != want.Produced || st.GapRecords != want.GapRecords || st.Dropped != want.Dropped || st.DeadLettered != 0 {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

type kafkaStats struct{ Produced, GapRecords, Dropped int64 }
