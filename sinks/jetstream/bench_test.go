package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// benchServer is the server a benchmark publishes to. With
// KUBEFEED_BENCH_NATS_URL set (a nats-server in another process, e.g.
// `go run ./test/cmd/natsdev serve DIR PORT`) the process's CPU, and so
// its profile and the client-cpu-ns/op metric, is the client's alone.
func benchServer(b *testing.B) string {
	if u := os.Getenv("KUBEFEED_BENCH_NATS_URL"); u != "" {
		return u
	}
	srv, err := natstest.Start(natstest.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	return srv.URL()
}

// BenchmarkPublishWindow publishes one event per call through the sink's
// window, as the exporter does, and waits for every ack.
func BenchmarkPublishWindow(b *testing.B) { benchPublish(b, 0) }

// BenchmarkPublishPaced publishes 2,000 events a second, as a burst of
// changes through the exporter does: few messages share a write or a
// read, so what each costs on its own (wake-ups, system calls) shows.
func BenchmarkPublishPaced(b *testing.B) { benchPublish(b, 2000) }

func benchPublish(b *testing.B, rate int) {
	url := benchServer(b)
	ctx := context.Background()
	cfg := sinkConfig(url)
	cfg.Stream = fmt.Sprintf("BENCH%d", time.Now().UnixNano())
	cfg.Provision.Subjects = []string{"bench." + cfg.Stream + ".>"}
	cfg.Subject = "bench." + cfg.Stream + ".{resource}.{change}"
	cfg.MaxPending = 4096
	s := newSink(b, cfg)
	evs := make([]*event.Event, 1000)
	for i := range evs {
		evs[i] = sinktest.Event(i, 1)
	}
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", evs[i%len(evs)].ID, i)
	}
	var wg sync.WaitGroup
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		tick = t.C
	}
	m := sinktest.StartCPU(b)
	for i := 0; i < b.N; i++ {
		if tick != nil {
			<-tick
		}
		e := *evs[i%len(evs)]
		e.ID = ids[i]
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
	m.Stop(b)
	_ = s.Close(ctx)
}

// BenchmarkPublishCeiling is the client alone: pre-encoded messages of
// the same size, nats.go's PublishMsgAsync with Msg-Id, 4096 pending.
func BenchmarkPublishCeiling(b *testing.B) {
	url := benchServer(b)
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	j, err := js.New(nc, js.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	name := fmt.Sprintf("C%d", time.Now().UnixNano())
	if _, err := j.CreateOrUpdateStream(ctx, js.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		b.Fatal(err)
	}
	body, _ := event.Marshal(sinktest.Event(1, 1))
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	m := sinktest.StartCPU(b)
	for i := 0; i < b.N; i++ {
		msg := nats.NewMsg(name + ".x")
		msg.Data = body
		if _, err := j.PublishMsgAsync(msg, js.WithMsgID(ids[i])); err != nil {
			b.Fatal(err)
		}
	}
	<-j.PublishAsyncComplete()
	m.Stop(b)
}
