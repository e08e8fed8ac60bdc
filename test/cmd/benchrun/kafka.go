package main

// Kafka throughput: kubefeed draining existing ConfigMaps (initialList:
// emit) into a Kafka-protocol broker, next to kubefeed draining them into
// no sink (its own bound), into JetStream, and to what a bare franz-go
// producer reaches against the same broker with the same number of ~1 KiB
// records (the ceiling). The broker is franz-go's kfake (test/kafkatest), run
// inside benchrun: no Kafka distribution can be installed where the
// benchmarks run, so the numbers measure kubefeed's Kafka path against
// kfake's, not a production cluster's.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

var (
	kafkaObjects = flag.Int("kafka", 20000, "ConfigMaps kubefeed drains into kfake for the Kafka throughput (0: skip)")
	kafkaOnly    = flag.Bool("kafka-only", false, "measure only the Kafka throughput; with -out, add it to out/benchmarks.json and render the report again")
)

const (
	// kafkaPartitions of both benchmark topics.
	kafkaPartitions = 4
	// kafkaTopic receives kubefeed's events; kafkaCeilingTopic the bare
	// producer's records.
	kafkaTopic        = "bench.kubefeed"
	kafkaCeilingTopic = "bench.ceiling"
	// kafkaCeilingRecord is the value size of the ceiling's records.
	kafkaCeilingRecord = 1024
	// kafkaTimeout bounds one Kafka measurement.
	kafkaTimeout = 5 * time.Minute
	// kafkaRounds: each round drains into the Kafka sink, into no sink
	// and runs the bare producer, in turn, since the shared machine's load
	// drifts over minutes; the report takes the round with the median
	// ratio of the Kafka drain to the bare producer.
	kafkaRounds = 3
)

// kafkaReport is the Kafka section of the report.
type kafkaReport struct {
	// Date the section was measured (RFC 3339), when -kafka-only
	// measured it apart from the rest of the report.
	Date       string `json:"date,omitempty"`
	Partitions int    `json:"partitions"`
	// Kubefeed: kubefeed draining Objects existing ConfigMaps
	// (initialList: emit) into kfake, acks=all, first to last ack.
	Kubefeed result `json:"kubefeed"`
	// Exporter: the same drain into no sink (each event rendered and
	// encoded, nothing sent): what kubefeed's own path reaches on this
	// machine, the bound of any sink's drain.
	Exporter result `json:"exporter"`
	// Rounds of Kubefeed, Exporter and Ceiling measured; the report holds
	// the one with the median Kubefeed/Ceiling ratio.
	Rounds int `json:"rounds,omitempty"`
	// JetStream: the same drain into the JetStream sink.
	JetStream result `json:"jetstream"`
	// Ceiling: a franz-go producer alone, the same number of
	// kafkaCeilingRecord-byte records, async, acks=all, first produce to
	// last ack.
	Ceiling result `json:"ceiling"`
}

// measureKafka starts kfake, creates n ConfigMaps in a fresh namespace,
// then runs the kubefeed-kafka and kafka-ceiling agents against it, and
// kubefeed-jetstream-emit against the nats-server at natsURL.
func measureKafka(cp *cluster.ControlPlane, cs *kubernetes.Clientset, natsURL, dir, name string, n int) (*kafkaReport, error) {
	kc, err := kafkatest.Start(filepath.Join(dir, "kafka"), kafkatest.Options{Topics: []string{kafkaTopic, kafkaCeilingTopic}, Partitions: kafkaPartitions})
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	defer kc.Shutdown()
	if err := createNS(cs, name); err != nil {
		return nil, err
	}
	if err := write(cs, name, n, 0); err != nil {
		return nil, err
	}
	type round struct{ kubefeed, exporter, ceiling result }
	var rounds []round
	for i := 0; i < kafkaRounds; i++ {
		var r round
		if r.kubefeed, err = startAgent(cp, kc.Addr(), dir, "kubefeed-kafka", name, n, nil); err != nil {
			return nil, fmt.Errorf("kubefeed-kafka: %w", err)
		}
		if r.exporter, err = startAgent(cp, natsURL, dir, "kubefeed-emit", name, n, nil); err != nil {
			return nil, fmt.Errorf("kubefeed-emit: %w", err)
		}
		if r.ceiling, err = startAgent(cp, kc.Addr(), dir, "kafka-ceiling", name, n, nil); err != nil {
			return nil, fmt.Errorf("kafka-ceiling: %w", err)
		}
		fmt.Printf("kafka round %d: kubefeed %.0f/s (%.4f CPU s/1k), no sink %.0f/s (%.4f CPU s/1k), bare producer %.0f/s (%.4f CPU s/1k): %.2f× the producer, %.2f× no sink\n", i+1,
			r.kubefeed.Rate, r.kubefeed.CPUPer1k, r.exporter.Rate, r.exporter.CPUPer1k, r.ceiling.Rate, r.ceiling.CPUPer1k, r.kubefeed.Rate/r.ceiling.Rate, r.kubefeed.Rate/r.exporter.Rate)
		rounds = append(rounds, r)
	}
	sort.Slice(rounds, func(i, j int) bool {
		return rounds[i].kubefeed.Rate/rounds[i].ceiling.Rate < rounds[j].kubefeed.Rate/rounds[j].ceiling.Rate
	})
	mid := rounds[len(rounds)/2]
	rep := &kafkaReport{Date: time.Now().UTC().Format(time.RFC3339), Partitions: kafkaPartitions, Kubefeed: mid.kubefeed, Exporter: mid.exporter, Ceiling: mid.ceiling, Rounds: len(rounds)}
	if rep.JetStream, err = startAgent(cp, natsURL, dir, "kubefeed-jetstream-emit", name, n, nil); err != nil {
		return nil, fmt.Errorf("kubefeed-jetstream-emit: %w", err)
	}
	// Latency from creation means nothing for objects written before the
	// agent started.
	for _, r := range []*result{&rep.Kubefeed, &rep.Exporter, &rep.JetStream} {
		r.P50Millis, r.P99Millis = 0, 0
	}
	fmt.Printf("kafka: kubefeed drained %d objects at %.0f/s (no sink %.0f/s, to JetStream %.0f/s); a bare producer %.0f records/s (%.2f×, median of %d rounds)\n",
		n, rep.Kubefeed.Rate, rep.Exporter.Rate, rep.JetStream.Rate, rep.Ceiling.Rate, rep.Kubefeed.Rate/rep.Ceiling.Rate, len(rounds))
	return rep, nil
}

// kafkaSink is the sink of the kubefeed-kafka agent: acks=all (the
// default, idempotent producer), structured mode, the default window
// (maxInFlight), to kafkaTopic.
func kafkaSink(ctx context.Context, broker string) (*kafka.Sink, error) {
	c := config.Config{Sinks: []config.Sink{{Name: "s", Kafka: &config.KafkaSink{Brokers: []string{broker}, Topic: kafkaTopic}}}}
	c.SetDefaults()
	return kafka.New(ctx, kafka.Options{Config: *c.Sinks[0].Kafka, Cluster: "bench"})
}

// kafkaCeiling is the kafka-ceiling agent: it produces n records of
// kafkaCeilingRecord bytes, keyed like kubefeed's (a uid-sized key), to
// kafkaCeilingTopic as fast as franz-go goes (async, acks=all,
// idempotent), and reports the rate from the first produce to the last
// ack.
func kafkaCeiling(broker string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(kafkaCeilingTopic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaTimeout)
	defer cancel()
	// Connect and load metadata before the clock starts, as kubefeed's sink
	// does in New.
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", broker, err)
	}
	value := []byte(strings.Repeat("x", kafkaCeilingRecord))
	cpuReady := cpuSeconds()
	fmt.Println("READY")
	var acked atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for i := 0; i < n; i++ {
		key := fmt.Appendf(nil, "%08d-0000-4000-8000-%012d", i, i)
		cl.Produce(ctx, &kgo.Record{Key: key, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			acked.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	secs := time.Since(start).Seconds()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if got := acked.Load(); got != int64(n) {
		return fmt.Errorf("%d of %d records acknowledged", got, n)
	}
	r := result{Mode: "kafka-ceiling", Objects: n, Seconds: secs, Rate: float64(n) / secs,
		CPUPer1k: (cpuSeconds() - cpuReady) / float64(n) * 1000, RSSMiB: rssMiB()}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	return nil
}
