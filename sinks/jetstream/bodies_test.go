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
