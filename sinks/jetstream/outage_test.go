package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func testConfig(url string, provision bool) Config {
	c := Config{
		NATSConnection: natsconn.Config{Servers: []string{url}},
		Stream:         "KUBEFEED",
	}
	if provision {
		c.Provision = &StreamProvision{}
	}
	c.SetDefaults()
	return c
}

func openSink(t *testing.T, cfg Config, ackTimeout time.Duration) *Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, Options{Config: cfg, Cluster: "test", ackTimeout: ackTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func streamIDs(t *testing.T, url string) map[string]int {
	t.Helper()
	msgs, err := natstest.ReadStream(url, "KUBEFEED")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, m := range msgs {
		ids[m.Header.Get(nats.MsgIdHdr)]++
	}
	return ids
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestLostAckTimesOut: a message that reaches a subscriber but no stream
// gets no ack; it fails retryably after the ack timeout, and its retry,
// once a stream holds the subject, is delivered.
func TestLostAckTimesOut(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.Provision.Subjects = []string{"elsewhere.>"}
	nc, js := connect(t, srv.URL())
	swallow, err := nc.SubscribeSync("kubefeed.>") // takes the messages, never answers
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, cfg, 200*time.Millisecond)
	e := sinktest.Event(1, 1)
	err = s.Send(context.Background(), []*event.Event{e})
	if err == nil || sinks.IsPermanent(err) || !errors.Is(err, jetstream.ErrAsyncPublishTimeout) || !strings.Contains(err.Error(), e.ID) {
		t.Fatalf("send with the ack lost: %v, want a retryable timeout naming %s", err, e.ID)
	}
	if _, err := swallow.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the message did not go out: %v", err)
	}
	_ = swallow.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"elsewhere.>", "kubefeed.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if ids := streamIDs(t, srv.URL()); ids[e.ID] != 1 || len(ids) != 1 {
		t.Errorf("stream holds %v, want %s once", ids, e.ID)
	}
}

// TestServerRestartMidWindow: the server goes away with a window of
// publishes outstanding. Every publish ends (an error, or done with an
// error or nil), every failure is retryable, and after the restart the
// retries deliver every event exactly once (the ids de-duplicate what was
// stored although its ack was lost).
func TestServerRestartMidWindow(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.MaxPending = 64
	s := openSink(t, cfg, 5*time.Second)
	const n = 400
	var (
		mu     sync.Mutex
		failed []int
		calls  = map[int]int{}
		wg     sync.WaitGroup
	)
	fail := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if sinks.IsPermanent(err) {
			t.Errorf("event %d: permanent error %v", i, err)
		}
		failed = append(failed, i)
	}
	for i := 0; i < n; i++ {
		if i == n/4 {
			srv.Shutdown() // with acks outstanding
		}
		wg.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := s.Publish(ctx, []*event.Event{sinktest.Event(i, 1)}, func(err error) {
			defer wg.Done()
			mu.Lock()
			calls[i]++
			mu.Unlock()
			if err != nil {
				fail(i, err)
			}
		})
		cancel()
		if err != nil {
			wg.Done()
			fail(i, err)
		}
	}
	wg.Wait()
	for i, c := range calls {
		if c != 1 {
			t.Errorf("event %d: done called %d times", i, c)
		}
	}
	if len(failed) == 0 {
		t.Fatal("nothing failed: the server was not shut down mid-window")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, i := range failed {
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = s.Send(ctx, []*event.Event{sinktest.Event(i, 1)})
			cancel()
			if err == nil {
				break
			}
			if sinks.IsPermanent(err) {
				t.Fatalf("retry of %d: permanent error %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // reconnecting
		}
		if err != nil {
			t.Fatalf("retry of %d: %v", i, err)
		}
	}
	ids := streamIDs(t, srv.URL())
	for i := 0; i < n; i++ {
		if id := sinktest.Event(i, 1).ID; ids[id] != 1 {
			t.Errorf("%s stored %d times, want once", id, ids[id])
		}
	}
	if len(ids) != n {
		t.Errorf("stream holds %d ids, want %d", len(ids), n)
	}
}

// TestDeletedStream: a publish after the stream was deleted fails
// retryably naming the stream; without provision the next publish says
// the stream is missing, with provision it creates it again.
func TestDeletedStream(t *testing.T) {
	for _, provision := range []bool{false, true} {
		t.Run(fmt.Sprintf("provision=%v", provision), func(t *testing.T) {
			srv := natstest.StartT(t, natstest.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, _ := sentThenStreamDeleted(ctx, t, srv.URL(), provision)
			err := s.Send(ctx, []*event.Event{sinktest.Event(2, 1)})
			if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "stream KUBEFEED") || !strings.Contains(err.Error(), "kubefeed.test.core.configmaps.ns.modified") {
				t.Fatalf("send after the stream was deleted: %v, want a retryable error naming stream KUBEFEED and the subject", err)
			}
			err = s.Send(ctx, []*event.Event{sinktest.Event(2, 1)})
			if !provision {
				if err == nil || !strings.Contains(err.Error(), "stream KUBEFEED not found") {
					t.Fatalf("second send: %v, want stream KUBEFEED not found", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("second send with provision: %v", err)
			}
			if ids := streamIDs(t, srv.URL()); len(ids) != 1 || ids[sinktest.Event(2, 1).ID] != 1 {
				t.Errorf("recreated stream holds %v", ids)
			}
		})
	}
}

// sentThenStreamDeleted makes stream KUBEFEED, opens a sink on it that
// sends one event, and deletes the stream; it returns the sink and the
// JetStream context.
func sentThenStreamDeleted(ctx context.Context, t *testing.T, url string, provision bool) (*Sink, jetstream.JetStream) {
	t.Helper()
	_, js := connect(t, url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"kubefeed.test.>"}}); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, testConfig(url, provision), 5*time.Second)
	if err := s.Send(ctx, []*event.Event{sinktest.Event(1, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "KUBEFEED"); err != nil {
		t.Fatal(err)
	}
	return s, js
}
