package kafka

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// The benchmarks below send ~1 KiB ConfigMap events, one per publish as
// the exporter's workers do, through the sink to a broker, and the same
// records through a bare kgo client configured as the sink's (linger 0,
// acks=all, idempotent, the window as kgo's buffer bound): the difference
// is the sink's own cost per event. With KUBEFEED_BENCH_KAFKA_ADDR set (a
// kfake in another process, with a topic "bench" of 4 partitions) the
// process's CPU, its profile and the cpu-ns/op metric are the client's
// alone; otherwise kfake runs in the benchmark's process.

const benchTopic = "bench"

func benchBroker(b *testing.B) string {
	if a := os.Getenv("KUBEFEED_BENCH_KAFKA_ADDR"); a != "" {
		return a
	}
	return kafkatest.StartT(b, kafkatest.Options{Topics: []string{benchTopic}, Partitions: 4}).Addr()
}

// benchEvents are n ConfigMap added events of distinct objects, each
// ~1 KiB encoded (sixteen data keys), as the drain benchmark's.
func benchEvents(n int) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		e := sinktest.Event(i, 1)
		data := map[string]any{}
		for k := 0; k < 16; k++ {
			data[fmt.Sprintf("key-%02d", k)] = fmt.Sprintf("%052d", 1000*k+i)
		}
		d := e.Data.(*event.ChangeData)
		d.Object["data"] = data
		evs[i] = e
	}
	return evs
}

func benchConfig(addr, mode string) Config {
	c := Config{Brokers: []string{addr}, Topic: benchTopic, Mode: mode}
	c.SetDefaults()
	return c
}

// BenchmarkSinkStructured publishes one event per call through the sink,
// structured mode, and waits for every ack at the end.
func BenchmarkSinkStructured(b *testing.B) { benchSink(b, sinks.ModeStructured, 0) }

// BenchmarkSinkBinary is BenchmarkSinkStructured in binary mode.
func BenchmarkSinkBinary(b *testing.B) { benchSink(b, sinks.ModeBinary, 0) }

// BenchmarkSinkPaced publishes 20,000 events a second (20 each
// millisecond), about the drain's rate into the sink: few records share a
// produce request, so what each costs on its own (requests, wake-ups,
// system calls) shows.
func BenchmarkSinkPaced(b *testing.B) { benchSink(b, sinks.ModeStructured, pacedRate) }

// pacedRate is the paced benchmarks' events per second.
const pacedRate = 20000

// pacer lets rate events a second through, a millisecond's worth at a
// time; a zero rate lets everything through.
type pacer struct {
	tick  *time.Ticker
	burst int
	n     int
}

func newPacer(rate int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	return &pacer{tick: time.NewTicker(time.Millisecond), burst: max(rate/1000, 1)}
}

func (p *pacer) wait() {
	if p.tick == nil {
		return
	}
	if p.n++; p.n%p.burst == 0 {
		<-p.tick.C
	}
}

func (p *pacer) stop() {
	if p.tick != nil {
		p.tick.Stop()
	}
}

func benchSink(b *testing.B, mode string, rate int) {
	addr := benchBroker(b)
	ctx := context.Background()
	s, err := New(ctx, Options{Config: benchConfig(addr, mode), Cluster: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close(ctx) }()
	evs := benchEvents(1000)
	// The first publish checks the topic: not measured.
	if err := s.Send(ctx, evs[:1]); err != nil {
		b.Fatal(err)
	}
	paced(b, rate, func(i int, done func(error)) {
		if err := s.Publish(ctx, evs[i%len(evs):i%len(evs)+1], done); err != nil {
			b.Fatal(err)
		}
	})
}

// paced measures b.N calls of send at rate a second (0: as fast as
// send returns), until every done came; an error fails b.
func paced(b *testing.B, rate int, send func(i int, done func(error))) {
	var wg sync.WaitGroup
	var failed sync.Once
	p := newPacer(rate)
	defer p.stop()
	m := sinktest.StartCPU(b)
	for i := 0; i < b.N; i++ {
		p.wait()
		wg.Add(1)
		send(i, func(err error) {
			if err != nil {
				failed.Do(func() { b.Error(err) })
			}
			wg.Done()
		})
	}
	wg.Wait()
	m.Stop(b)
}

// BenchmarkBareProducer produces the records the sink would (the events
// encoded beforehand, structured) through a kgo client with the sink's
// options, one promise per record.
func BenchmarkBareProducer(b *testing.B) { benchBare(b, 0, 0) }

// BenchmarkBareProducerPaced is BenchmarkBareProducer at
// BenchmarkSinkPaced's rate, with the sink's linger (none) and others.
func BenchmarkBareProducerPaced(b *testing.B) {
	for _, l := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("linger="+l.String(), func(b *testing.B) { benchBare(b, pacedRate, l) })
	}
}

func benchBare(b *testing.B, rate int, linger time.Duration) {
	addr := benchBroker(b)
	c := benchConfig(addr, sinks.ModeStructured)
	opts, err := clientOptions(c, c.MaxInFlight, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	// Produce blocks while the window (kgo's buffer bound) is full.
	opts = append(opts, kgo.MaxBufferedRecords(c.MaxInFlight))
	if linger > 0 {
		opts = append(opts, kgo.ProducerLinger(linger))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	evs := benchEvents(1000)
	recs := make([]kgo.Record, len(evs))
	for i, e := range evs {
		enc, err := sinks.Encode(e, sinks.ModeStructured, 0)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = *record(benchTopic, enc)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: benchTopic, Value: recs[0].Value}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	paced(b, rate, func(i int, done func(error)) {
		r := recs[i%len(recs)] // a record per produce, as the sink's
		cl.Produce(ctx, &r, func(_ *kgo.Record, err error) { done(err) })
	})
}

// BenchmarkEncodeStructured is what encoding one event costs (the drain
// into no sink pays it too).
func BenchmarkEncodeStructured(b *testing.B) {
	evs := benchEvents(1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := sinks.Encode(evs[i%len(evs)], sinks.ModeStructured, 0); err != nil {
			b.Fatal(err)
		}
	}
}
