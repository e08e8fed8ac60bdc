package jetstream_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func sinkConfig(url string) config.JetStreamSink {
	c := config.Config{Sinks: []config.Sink{{Name: "js", JetStream: &config.JetStreamSink{
		NATSConnection: config.NATSConnection{Servers: []string{url}},
		Stream:         "KUBEFEED",
		Provision:      &config.StreamProvision{},
	}}}}
	c.SetDefaults()
	return *c.Sinks[0].JetStream
}

func newSink(t testing.TB, cfg config.JetStreamSink) *jetstream.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jetstream.New(ctx, jetstream.Options{Config: cfg, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stored reads every message of the stream.
func stored(t *testing.T, url, stream string) []*nats.Msg {
	t.Helper()
	msgs, err := natstest.ReadStream(url, stream)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestConformance(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinks.Sink { return newSink(t, sinkConfig(srv.URL())) },
		Received: func(t *testing.T) []string {
			var ids []string
			for _, m := range stored(t, srv.URL(), "KUBEFEED") {
				ids = append(ids, m.Header.Get(nats.MsgIdHdr))
			}
			return ids
		},
		Break: func(*testing.T) { srv.Shutdown() },
		Heal: func(t *testing.T) {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestDuplicatesAreDroppedAndCounted(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	s := newSink(t, sinkConfig(srv.URL()))
	defer s.Close(context.Background())
	e := sinktest.Event(1, 1)
	for i := 0; i < 3; i++ {
		if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(stored(t, srv.URL(), "KUBEFEED")); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
	if st := s.Stats(); st.Duplicates != 2 || st.Published != 3 {
		t.Errorf("stats = %+v, want 3 published, 2 duplicates", st)
	}
}

func TestSubjectsEscapeTokens(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	s := newSink(t, sinkConfig(srv.URL()))
	defer s.Close(context.Background())
	e := sinktest.Event(1, 1)
	e.APIVersion, e.Resource, e.Namespace = "networking.k8s.io/v1", "ingresses", ""
	e2 := sinktest.Event(2, 1)
	e2.Cluster = "test"
	if err := s.Send(context.Background(), []*event.Event{e, e2}); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, srv.URL(), "KUBEFEED")
	want := []string{"kubefeed.test.networking_k8s_io.ingresses._.modified", "kubefeed.test.core.configmaps.ns.modified"}
	for i, m := range msgs {
		if m.Subject != want[i] {
			t.Errorf("subject %d = %s, want %s", i, m.Subject, want[i])
		}
	}
}

func TestMissingStreamIsAClearError(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := sinkConfig(srv.URL())
	cfg.Provision = nil
	_, err := jetstream.New(context.Background(), jetstream.Options{Config: cfg, Cluster: "test"})
	if err == nil || !strings.Contains(err.Error(), "stream KUBEFEED not found") || !strings.Contains(err.Error(), "kubefeed.test.>") {
		t.Errorf("New without stream: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

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

func subjects(msgs []*nats.Msg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}
