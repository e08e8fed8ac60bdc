package jetstream

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit4AnswerQueueRunsWhatIsPushedAfterQuit: the answers queue now
// keeps one goroutine until quit closes, and that goroutine returns when
// the queue is empty and quit is closed. A function pushed after that is
// never run (push sees started and only signals wake, which nobody reads),
// and one pushed while the goroutine sits in its select with quit closed
// is run or not at random. Before the change each burst got a goroutine
// of its own, so every pushed function ran. Not reachable through Sink
// today (Close waits for every batch before halt closes stop, and only
// the reader and Close push), so latent: a done dropped without a trace
// if a later change pushes after halt (e.g. a reader that fails what is
// left on its way out).
func TestAudit4AnswerQueueRunsWhatIsPushedAfterQuit(t *testing.T) {
	quit := make(chan struct{})
	aq := &answerQueue{wake: make(chan struct{}, 1), quit: quit}
	ran := make(chan int, 2)
	aq.push(func() { ran <- 1 })
	<-ran
	close(quit)
	time.Sleep(50 * time.Millisecond) // the goroutine sees quit and returns
	aq.push(func() { ran <- 2 })
	select {
	case <-ran:
	case <-time.After(2 * time.Second):
		t.Fatal("a function pushed after quit closed never ran (its done would be lost)")
	}
}

// TestAudit4CloseInEveryOrder: a sink closed before any publish, with acks
// outstanding, with its ctx already expired, and after its connection was
// lost mid-window calls every done exactly once before Close returns and
// leaves no goroutine of its answers queue or ack reader behind.
func TestAudit4CloseInEveryOrder(t *testing.T) {
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
