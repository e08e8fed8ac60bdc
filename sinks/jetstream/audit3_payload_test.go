package jetstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3EventsAtTheLimit: in both modes, an event whose encoding is
// exactly the sink's limit goes out whole (headers, Nats-Msg-Id and the
// reply subject fit in the margin), and one byte more is shrunk, not
// dropped.
func TestAudit3EventsAtTheLimit(t *testing.T) {
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
