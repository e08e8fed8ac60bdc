package jetstream_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

func TestBinaryMode(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := sinkConfig(srv.URL())
	cfg.Mode = config.ModeBinary
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	e := sinktest.Event(1, 1)
	if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	m := stored(t, srv.URL(), "KUBEFEED")[0]
	if m.Header.Get("ce-id") != e.ID || m.Header.Get("ce-type") != e.Type || m.Header.Get("ce-specversion") != "1.0" || m.Header.Get("Content-Type") != "application/json" {
		t.Errorf("binary headers: %v", m.Header)
	}
	var data event.ChangeData
	if err := json.Unmarshal(m.Data, &data); err != nil || data.Object["kind"] != "ConfigMap" {
		t.Errorf("binary body is not the data: %s", m.Data)
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

func TestOversizedEventsFollowThePolicy(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 64 << 10})
	cfg := sinkConfig(srv.URL())
	cfg.DeadLetterSubject = "kubefeed.deadletter"
	cfg.Provision.Subjects = []string{"kubefeed.>"}
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	big := strings.Repeat("x", 100<<10)

	// 1: oldObject too large: dropped, object kept.
	e1 := sinktest.Event(1, 1)
	e1.Data.(*event.ChangeData).OldObject = map[string]any{"data": big}
	// 2: object too large, patch small: identity object, patch kept.
	e2 := sinktest.Event(2, 1)
	e2.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
	e2.Data.(*event.ChangeData).Patch = nil
	e2.Data.(*event.ChangeData).ChangedPaths = []string{"/data/v"}
	// 3: the patch itself is too large: stub to the dead-letter subject.
	e3 := sinktest.Event(3, 1)
	e3.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
	e3.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
	for _, e := range []*event.Event{e1, e2, e3} {
		if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
	}
	msgs := stored(t, srv.URL(), "KUBEFEED")
	if len(msgs) != 3 {
		t.Fatalf("stored %d messages, want 3", len(msgs))
	}
	var got []event.Event
	for _, m := range msgs {
		var e struct {
			event.Event
			Data event.ChangeData `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		e.Event.Data = &e.Data
		got = append(got, e.Event)
	}
	d := func(i int) *event.ChangeData { return got[i].Data.(*event.ChangeData) }
	if d(0).Truncated != sinks.TruncatedOldObject || d(0).OldObject != nil || d(0).Object["data"] == nil {
		t.Errorf("event 1: truncated %q, oldObject %v", d(0).Truncated, d(0).OldObject != nil)
	}
	if d(1).Truncated != sinks.TruncatedObject || d(1).Object["data"] != nil || len(d(1).ChangedPaths) != 1 || d(1).Object["metadata"].(map[string]any)["name"] != "obj-2" {
		t.Errorf("event 2: truncated %q, object %v", d(1).Truncated, d(1).Object)
	}
	if msgs[2].Subject != "kubefeed.deadletter" || d(2).Truncated != sinks.TruncatedAll {
		t.Errorf("event 3: subject %s truncated %q", msgs[2].Subject, d(2).Truncated)
	}
	if st := s.Stats(); st.DeadLettered != 1 || st.Shrunk != 2 {
		t.Errorf("stats %+v, want 2 shrunk and 1 dead-lettered", st)
	}

	// Without a dead-letter subject the event is a permanent error.
	cfg.DeadLetterSubject = ""
	s2 := newSink(t, cfg)
	defer s2.Close(context.Background())
	if err := s2.Send(context.Background(), []*event.Event{e3}); !sinks.IsPermanent(err) {
		t.Errorf("oversized without dead letter: %v, want a permanent error", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
