package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/test/natstest"
)

func TestJetStreamSurvivesRestart(t *testing.T) {
	s := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	js := natstest.JetStream(t, s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SMOKE", Subjects: []string{"smoke.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "smoke.a", []byte("one"), jetstream.WithMsgID("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// The client reconnects to the same port; the message is still stored.
	var ack *jetstream.PubAck
	var err error
	for ack == nil {
		ack, err = js.Publish(ctx, "smoke.a", []byte("one"), jetstream.WithMsgID("1"))
		if err != nil && ctx.Err() != nil {
			t.Fatalf("publish after restart: %v", err)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ack.Duplicate {
		t.Errorf("republished id 1 after restart: not reported as duplicate")
	}
	stream, err := js.Stream(ctx, "SMOKE")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "smoke.a")
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "one" || msg.Sequence != 1 {
		t.Errorf("stored message = %q seq %d, want \"one\" seq 1", msg.Data, msg.Sequence)
	}
}
