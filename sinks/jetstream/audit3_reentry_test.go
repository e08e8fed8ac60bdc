package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3DoneThatPublishesDoesNotStallTheReader: the AsyncSink
// contract lets done call Publish again, and promises that done always
// comes (the sink bounds the wait for acks itself). Here the reader
// goroutine runs A's done, whose Publish(C) waits for the window slot
// that a concurrent Publish(P) took first. P's ack never comes, so only
// the reader's ack timeout can free the slot — but the reader is the
// goroutine blocked inside done(A). done(P) must still come (with a
// retryable timeout) within a bound far above the ack timeout.
func TestAudit3DoneThatPublishesDoesNotStallTheReader(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.Provision.Subjects = []string{"elsewhere.>"} // no stream acks kubefeed.>
	cfg.MaxPending = 1
	nc, _ := connect(t, srv.URL())
	fake, err := nc.SubscribeSync("kubefeed.>") // the test answers (or not) in place of a stream
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const ackTimeout = 300 * time.Millisecond
	s := openSink(t, cfg, ackTimeout)
	t.Cleanup(func() { // bounded: a stuck reader must not hang the suite
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})

	doneP := make(chan error, 1)
	doneC := make(chan error, 1)
	publishedC := make(chan error, 1)
	doneA := func(err error) {
		if err != nil {
			t.Errorf("done(A): %v", err)
		}
		// Publish from inside done, as the contract allows.
		publishedC <- s.Publish(context.Background(), []*event.Event{sinktest.Event(3, 1)}, func(err error) { doneC <- err })
	}
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 1)}, doneA); err != nil {
		t.Fatal(err)
	}
	mA, err := fake.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// P waits for the window (A holds its only slot).
	go func() {
		if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(2, 1)}, func(err error) { doneP <- err }); err != nil {
			doneP <- err
		}
	}()
	for s.win.acquireMu.TryLock() {
		s.win.acquireMu.Unlock()
		time.Sleep(time.Millisecond) // until P is inside acquire
	}
	// A's ack: the reader runs done(A), which publishes C.
	if err := nc.PublishMsg(&nats.Msg{Subject: mA.Reply, Data: []byte(`{"stream":"KUBEFEED","seq":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.NextMsg(5 * time.Second); err != nil { // P's message; never answered
		t.Fatal(err)
	}
	select {
	case err := <-doneP:
		if err == nil {
			t.Fatal("done(P) got nil without an ack")
		}
	case <-time.After(20 * ackTimeout):
		t.Fatalf("done(P) not called %s after its publish (ack timeout %s): the ack reader is stuck in done(A)'s Publish", 20*ackTimeout, ackTimeout)
	}
}
