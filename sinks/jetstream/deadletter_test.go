package jetstream_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// oversized is an event whose patch alone exceeds a 64 KiB max payload.
func oversized(obj int) *event.Event {
	e := sinktest.Event(obj, 1)
	d := e.Data.(*event.ChangeData)
	d.Object["data"] = map[string]any{"v": strings.Repeat("x", 100<<10)}
	d.ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
	return e
}

// TestREADMEDeadLetterExample: the README's example (provision without
// subjects, deadLetterSubject: kubefeed.deadletter) works as written: the
// provisioned stream covers the dead-letter subject too.
func TestREADMEDeadLetterExample(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 64 << 10})
	cfg := sinkConfig(srv.URL())
	cfg.DeadLetterSubject = "kubefeed.deadletter"
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	small, big := sinktest.Event(1, 1), oversized(2)
	if err := s.Send(ctx, []*event.Event{small, big}); err != nil {
		t.Fatalf("send to the README's stream: %v", err)
	}
	msgs := stored(t, srv.URL(), "KUBEFEED")
	if len(msgs) != 2 || msgs[1].Subject != "kubefeed.deadletter" || msgs[1].Header.Get(nats.MsgIdHdr) != big.ID {
		t.Fatalf("stream holds %d messages (%v), want the event and the stub on kubefeed.deadletter", len(msgs), subjects(msgs))
	}
}

// TestExistingStreamMustHoldTheDeadLetterSubject: without provision, a
// stream that does not hold the dead-letter subject is a clear error at
// start instead of stubs that never arrive.
func TestExistingStreamMustHoldTheDeadLetterSubject(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, njs.StreamConfig{Name: "KUBEFEED", Subjects: []string{"kubefeed.test.>"}}); err != nil {
		t.Fatal(err)
	}
	cfg := sinkConfig(srv.URL())
	cfg.Provision = nil
	cfg.DeadLetterSubject = "kubefeed.deadletter"
	_, err = jetstream.New(ctx, jetstream.Options{Config: cfg, Cluster: "test"})
	if err == nil || !strings.Contains(err.Error(), "kubefeed.deadletter") {
		t.Fatalf("New with a stream lacking the dead-letter subject: %v", err)
	}
	cfg.DeadLetterSubject = "kubefeed.test.deadletter" // covered by kubefeed.test.>
	s, err := jetstream.New(ctx, jetstream.Options{Config: cfg, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
}

// TestOversizedWithoutDeadLetterWaitsForEarlierAcks: when an event of a
// batch is too large and there is no dead-letter subject, the events
// published before it are acknowledged before the permanent error returns.
func TestOversizedWithoutDeadLetterWaitsForEarlierAcks(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 64 << 10})
	s := newSink(t, sinkConfig(srv.URL()))
	defer s.Close(context.Background())
	small := sinktest.Event(1, 1)
	err := s.Send(context.Background(), []*event.Event{small, oversized(2)})
	if err == nil {
		t.Fatal("oversized without dead letter: no error")
	}
	if st := s.Stats(); st.Published != 1 || st.Dropped != 1 {
		t.Errorf("stats %+v: want the small event acked before the error", st)
	}
}

func subjects(msgs []*nats.Msg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}
