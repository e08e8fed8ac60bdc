package jetstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// TestReusedBodiesArriveWhole: encoding buffers are reused from one
// publish to the next (and grow for a large event), so every stored
// message must still be exactly its own event, whatever the sizes of the
// events published before and after it and however publishes interleave.
func TestReusedBodiesArriveWhole(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	s := newSink(t, sinkConfig(srv.URL()))
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string][]byte{}
	var batches [][]*event.Event
	for i := 0; i < 40; i++ {
		var batch []*event.Event
		for j := 0; j <= i%3; j++ {
			e := sinktest.Event(i*10+j, 1)
			d := e.Data.(*event.ChangeData)
			// Sizes from tiny to 100 KiB (beyond what is pooled), with
			// escapes, so that a stale tail or a shared buffer would show.
			size := []int{0, 10, 5000, 100 << 10, 300}[(i+j)%5]
			d.Object = map[string]any{"data": map[string]any{"v": strings.Repeat(fmt.Sprintf("%d\"~/", i), size/4)}}
			b, err := event.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			want[e.ID] = b
			batch = append(batch, e)
		}
		batches = append(batches, batch)
	}
	sendFromTwo(ctx, t, s, batches)
	holdsExactly(t, srv.URL(), want, "")
}

// sendFromTwo sends the batches from two goroutines at once (every other
// batch each) and fails t on any error.
func sendFromTwo(ctx context.Context, t *testing.T, s *jetstream.Sink, batches [][]*event.Event) {
	t.Helper()
	errs := make(chan error, len(batches))
	for w := 0; w < 2; w++ {
		go func() {
			for i := w; i < len(batches); i += 2 {
				errs <- s.Send(ctx, batches[i])
			}
		}()
	}
	for range batches {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestBodiesWholeAroundAFailureMidBatch: a batch with an event near 1 MiB,
// then one that can never fit (no dead-letter subject), then another: the
// first is stored whole, the permanent error comes back, the rest of the
// batch is not sent, and the buffers released on that path serve the next
// batch without a stale byte.
func TestBodiesWholeAroundAFailureMidBatch(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	s := newSink(t, sinkConfig(srv.URL()))
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string][]byte{}
	mk := func(obj int, v string) *event.Event {
		e := sinktest.Event(obj, 1)
		e.Data.(*event.ChangeData).Object = map[string]any{"data": map[string]any{"v": v}}
		b, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		want[e.ID] = b
		return e
	}
	near := mk(1, strings.Repeat("n\"~/", 760<<10/4)) // about 950 KiB once the quotes are escaped
	never := oversized(2)
	never.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 1<<20)} // 2 MiB of patch
	after := mk(3, "after")
	if err := s.Send(ctx, []*event.Event{near, never, after}); err == nil {
		t.Fatal("a batch with an event that can never fit succeeded")
	}
	var next []*event.Event
	for i := 0; i < 20; i++ {
		next = append(next, mk(10+i, strings.Repeat(fmt.Sprint(i), i*100)))
	}
	if err := s.Send(ctx, next); err != nil {
		t.Fatal(err)
	}
	delete(want, after.ID) // after the permanent error: not sent
	holdsExactly(t, srv.URL(), want, " (the near-1-MiB one and the next batch)")
}

// holdsExactly checks that stream KUBEFEED holds one message per entry of
// want (by Msg-Id), each with exactly its event's bytes; what names the
// expected messages in the error.
func holdsExactly(t *testing.T, url string, want map[string][]byte, what string) {
	t.Helper()
	got := stored(t, url, "KUBEFEED")
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d%s", len(got), len(want), what)
	}
	for _, m := range got {
		id := m.Header.Get(nats.MsgIdHdr)
		if !bytes.Equal(m.Data, want[id]) {
			t.Fatalf("message %s: %d bytes differ from its event's %d", id, len(m.Data), len(want[id]))
		}
	}
}

// TestPooledBodiesShrunkAndDeadLettered: batches mixing events that
// fit, events shrunk (oldObject dropped, object reduced) and events too
// large even then (a stub on the dead-letter subject), published from
// two goroutines so that pooled buffers grown, shrunk and reused by the
// retry encodings of EncodeInto pass between publishes. Every stored
// message is exactly what Encode gives for its event, on its subject,
// in both content modes.
func TestPooledBodiesShrunkAndDeadLettered(t *testing.T) {
	for _, mode := range []string{sinks.ModeStructured, sinks.ModeBinary} {
		t.Run(mode, func(t *testing.T) {
			const maxPayload = 64 << 10
			srv := natstest.StartT(t, natstest.Options{MaxPayload: maxPayload})
			cfg := sinkConfig(srv.URL())
			cfg.DeadLetterSubject = "kubefeed.deadletter"
			cfg.Mode = mode
			s := newSink(t, cfg)
			defer s.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			limit := maxPayload - 512
			type want struct {
				subject string
				body    []byte
				headers [][2]string
			}
			wants := map[string]want{}
			var batches [][]*event.Event
			for i := 0; i < 30; i++ {
				var batch []*event.Event
				for j := 0; j < 1+i%4; j++ {
					e := sinktest.Event(i*10+j, 1)
					d := e.Data.(*event.ChangeData)
					tag := fmt.Sprintf("%d.%d\"\xff\u2028", i, j)
					switch (i + j) % 4 {
					case 0: // fits
						d.Object["data"] = map[string]any{"v": strings.Repeat(tag, 50)}
					case 1: // oldObject dropped
						d.Object["data"] = map[string]any{"v": strings.Repeat(tag, 500)}
						d.OldObject = map[string]any{"data": map[string]any{"v": strings.Repeat(tag, 60<<10/len(tag))}}
					case 2: // object reduced
						d.Object["data"] = map[string]any{"v": strings.Repeat(tag, 70<<10/len(tag))}
					case 3: // dead-lettered
						d.Object["data"] = map[string]any{"v": strings.Repeat(tag, 100<<10/len(tag))}
						d.ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
					}
					enc, err := sinks.Encode(e, mode, limit)
					subject := "(the event subject)"
					if err != nil {
						enc, err = sinks.Encode(sinks.Truncate(e, sinks.TruncatedAll), mode, limit)
						if err != nil {
							t.Fatal(err)
						}
						subject = "kubefeed.deadletter"
					}
					wants[e.ID] = want{subject: subject, body: enc.Body, headers: enc.Headers}
					batch = append(batch, e)
				}
				batches = append(batches, batch)
			}
			sendFromTwo(ctx, t, s, batches)
			got := stored(t, srv.URL(), "KUBEFEED")
			if len(got) != len(wants) {
				t.Fatalf("stream holds %d messages, want %d", len(got), len(wants))
			}
			dl := 0
			for _, m := range got {
				id := m.Header.Get(nats.MsgIdHdr)
				w, ok := wants[id]
				if !ok {
					t.Fatalf("unexpected message %s", id)
				}
				if m.Subject == "kubefeed.deadletter" {
					dl++
				}
				if (m.Subject == "kubefeed.deadletter") != (w.subject == "kubefeed.deadletter") {
					t.Errorf("message %s on %s, want %s", id, m.Subject, w.subject)
				}
				if !bytes.Equal(m.Data, w.body) {
					t.Errorf("message %s: %d bytes differ from Encode's %d", id, len(m.Data), len(w.body))
				}
				for _, h := range w.headers {
					if m.Header.Get(h[0]) != h[1] {
						t.Errorf("message %s: header %s = %q, want %q", id, h[0], m.Header.Get(h[0]), h[1])
					}
				}
			}
			if dl == 0 {
				t.Fatal("nothing was dead-lettered: the test does not cover the stub path")
			}
		})
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

// oversized is an event whose patch alone exceeds a 64 KiB max payload.
func oversized(obj int) *event.Event {
	e := sinktest.Event(obj, 1)
	d := e.Data.(*event.ChangeData)
	d.Object["data"] = map[string]any{"v": strings.Repeat("x", 100<<10)}
	d.ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
	return e
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
