package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// BenchmarkPublishWindow publishes one event per call through the sink's
// window, as the exporter does, and waits for every ack.
func BenchmarkPublishWindow(b *testing.B) {
	srv, err := natstest.Start(natstest.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	ctx := context.Background()
	s := newSink(b, sinkConfig(srv.URL()))
	evs := make([]*event.Event, 1000)
	for i := range evs {
		evs[i] = sinktest.Event(i, 1)
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := *evs[i%len(evs)]
		e.ID = fmt.Sprintf("%s-%d", e.ID, i)
		wg.Add(1)
		if err := s.Publish(ctx, []*event.Event{&e}, func(err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	_ = s.Close(ctx)
}

// BenchmarkPublishCeiling is the client alone: pre-encoded messages of
// the same size, PublishMsgAsync with Msg-Id, 4096 pending.
func BenchmarkPublishCeiling(b *testing.B) {
	srv, err := natstest.Start(natstest.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	j, err := js.New(nc, js.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := j.CreateOrUpdateStream(ctx, js.StreamConfig{Name: "C", Subjects: []string{"c.>"}}); err != nil {
		b.Fatal(err)
	}
	body, _ := event.Marshal(sinktest.Event(1, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := nats.NewMsg("c.x")
		m.Data = body
		if _, err := j.PublishMsgAsync(m, js.WithMsgID(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
	<-j.PublishAsyncComplete()
}
