package jetstream

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestCloseCallsEveryDoneInEveryOrder: a sink closed before any publish,
// with acks outstanding, with its ctx already expired, and after its
// connection was lost mid-window calls every done exactly once before
// Close returns and leaves no goroutine of its answers queue or ack reader
// behind.
func TestCloseCallsEveryDoneInEveryOrder(t *testing.T) {
	count := func() int {
		buf := make([]byte, 1<<22)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return strings.Count(stacks, "sinks/jetstream.(*acker)") + strings.Count(stacks, "sinks/jetstream.(*answerQueue)")
	}
	settle := func(t *testing.T, before int) {
		t.Helper()
		n := 0
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if n = count(); n <= before {
				return
			}
		}
		buf := make([]byte, 1<<22)
		t.Fatalf("%d goroutines of the sink's acker left (%d before):\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	type tc struct {
		name      string
		publishes int
		swallow   bool // acks never come
		lose      bool // the server goes away mid-window
		closeCtx  func() (context.Context, context.CancelFunc)
	}
	expired := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, cancel
	}
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 20*time.Millisecond)
	}
	for _, c := range []tc{
		{name: "before any publish", closeCtx: short},
		{name: "before any publish, ctx expired", closeCtx: expired},
		{name: "acks outstanding", publishes: 20, swallow: true, closeCtx: short},
		{name: "acks outstanding, ctx expired", publishes: 20, swallow: true, closeCtx: expired},
		{name: "acked, ctx expired", publishes: 20, closeCtx: expired},
		{name: "connection lost mid-window", publishes: 20, swallow: true, lose: true, closeCtx: expired},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := natstest.StartT(t, natstest.Options{})
			cfg := testConfig(srv.URL(), true)
			if c.swallow {
				cfg.Provision.Subjects = []string{"elsewhere.>"}
				nc, _ := connect(t, srv.URL())
				sub, err := nc.SubscribeSync("kubefeed.>")
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			before := count()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := New(ctx, Options{Config: cfg, Cluster: "test", ackTimeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			calls := map[int]int{}
			handed := 0
			for i := 0; i < c.publishes; i++ {
				if err := s.Publish(ctx, []*event.Event{sinktest.Event(i, 1)}, func(error) {
					mu.Lock()
					calls[i]++
					mu.Unlock()
				}); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
				handed++
			}
			if c.lose {
				srv.Shutdown()
				time.Sleep(200 * time.Millisecond)
			}
			cctx, ccancel := c.closeCtx()
			_ = s.Close(cctx)
			ccancel()
			mu.Lock()
			if len(calls) != handed {
				t.Errorf("%d of %d dones called when Close returned", len(calls), handed)
			}
			for i, n := range calls {
				if n != 1 {
					t.Errorf("done of %d called %d times", i, n)
				}
			}
			mu.Unlock()
			settle(t, before)
		})
	}
}

// TestCloseRacingPublishesAnswersEachOnce: 8 goroutines publish batches of
// 1-3 events while Close runs with a short ctx. Every Publish that
// returned nil gets exactly one done before Close returns, none that
// returned an error gets one, the window is empty afterwards, the reader
// has stopped, and a Publish after Close fails.
func TestCloseRacingPublishesAnswersEachOnce(t *testing.T) {
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
	if n := s.win.slots.Held(); n != 0 {
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

// TestNoGoroutineOfTheSinkAfterClose: after Close no goroutine of the
// sink (its ack reader) or of its connection is left, including when Close
// gave up on an ack that never came.
func TestNoGoroutineOfTheSinkAfterClose(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.Provision.Subjects = []string{"elsewhere.>"}
	nc, _ := connect(t, srv.URL())
	swallow, err := nc.SubscribeSync("kubefeed.>") // no ack ever comes
	if err != nil {
		t.Fatal(err)
	}
	defer swallow.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Other tests of the process may still have sinks and connections
	// winding down: compare with what ran before this test's sinks.
	count := func() (ackers, conns int) {
		buf := make([]byte, 1<<22)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return strings.Count(stacks, "sinks/jetstream.(*acker)") + strings.Count(stacks, "sinks/jetstream.(*answerQueue)"), strings.Count(stacks, ".(*Conn).readLoop(")
	}
	ackers0, conns0 := count()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		s, err := New(ctx, Options{Config: cfg, Cluster: "test", ackTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		if err := s.Publish(ctx, []*event.Event{sinktest.Event(i, 1)}, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_ = s.Close(cctx)
		ccancel()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("done got nil for a publish without an ack")
			}
		default:
			t.Fatal("Close returned before done")
		}
	}
	ackers, conns := 0, 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ackers, conns = count(); ackers <= ackers0 && conns <= conns0 {
			return
		}
	}
	buf := make([]byte, 1<<22)
	t.Fatalf("goroutines of closed sinks left: %d ack readers (%d before), %d connections (%d before):\n%s", ackers, ackers0, conns, conns0, buf[:runtime.Stack(buf, true)])
}

// TestEventsAtTheLimitGoOutWhole: in both modes, an event whose encoding
// is exactly the sink's limit goes out whole (headers, Nats-Msg-Id and the
// reply subject fit in the margin), and one byte more is shrunk, not
// dropped.
func TestEventsAtTheLimitGoOutWhole(t *testing.T) {
	for _, mode := range []string{sinks.ModeStructured, sinks.ModeBinary} {
		t.Run(mode, func(t *testing.T) {
			srv := natstest.StartT(t, natstest.Options{MaxPayload: 64 << 10})
			cfg := testConfig(srv.URL(), true)
			cfg.Mode = mode
			s := openSink(t, cfg, 5*time.Second)
			limit := int(s.nc.MaxPayload()) - 512
			// An event of exactly n bytes on the wire (encoded size).
			sized := func(obj, n int) *event.Event {
				e := sinktest.Event(obj, 1)
				pad := "x"
				e.Data.(*event.ChangeData).Object["pad"] = pad
				enc, err := sinks.Encode(e, mode, 0)
				if err != nil {
					t.Fatal(err)
				}
				e.Data.(*event.ChangeData).Object["pad"] = strings.Repeat("x", 1+n-enc.Size())
				if enc, _ = sinks.Encode(e, mode, 0); enc.Size() != n {
					t.Fatalf("built %d bytes, want %d", enc.Size(), n)
				}
				return e
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Send(ctx, []*event.Event{sized(1, limit), sized(2, limit+1), sized(3, limit)}); err != nil {
				t.Fatalf("send at the limit: %v", err)
			}
			if st := s.Stats(); st.Shrunk != 1 || st.Published != 3 || st.Dropped != 0 {
				t.Errorf("stats %+v, want 3 published, 1 shrunk", st)
			}
		})
	}
}
