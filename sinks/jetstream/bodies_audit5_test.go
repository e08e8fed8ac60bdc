package jetstream_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit5PooledBodiesShrunkAndDeadLettered: batches mixing events that
// fit, events shrunk (oldObject dropped, object reduced) and events too
// large even then (a stub on the dead-letter subject), published from
// two goroutines so that pooled buffers grown, shrunk and reused by the
// retry encodings of EncodeInto pass between publishes. Every stored
// message is exactly what Encode gives for its event, on its subject,
// in both content modes.
func TestAudit5PooledBodiesShrunkAndDeadLettered(t *testing.T) {
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
