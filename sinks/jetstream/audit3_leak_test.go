package jetstream

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3NoGoroutineOfTheSinkAfterClose: after Close no goroutine of
// the sink (its ack reader) or of its connection is left, including
// when Close gave up on an ack that never came.
func TestAudit3NoGoroutineOfTheSinkAfterClose(t *testing.T) {
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
