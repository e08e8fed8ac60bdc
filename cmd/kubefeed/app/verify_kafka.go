package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/kafka"
)

// kafkaFeed reads a kafka sink's topics: every partition of the topic of
// each compared scope (one topic, or one per resource with a template),
// up to the high watermarks at the start of each read, skipping other
// clusters' events.
type kafkaFeed struct {
	client  []kgo.Opt
	brokers []string
	sink    string
	cluster string
	// templated: a topic per resource, which does not exist until the
	// sink wrote an event of it (read as empty). A single topic must
	// exist.
	templated bool
	rep       *verifyReport // Topics, Kafka, BadMessages
}

func openKafkaFeed(cluster, sink string, sc *config.KafkaSink, scopes []*verifyScope, rep *verifyReport) (*kafkaFeed, error) {
	client, err := kafka.ConnectOptions(*sc)
	if err != nil {
		return nil, usageErr(fmt.Errorf("sink %s: %w", sink, err))
	}
	topics := map[string]bool{}
	for _, s := range scopes {
		t, err := kafka.TopicFor(sc.Topic, cluster, s.res.GVR.Group, s.res.GVR.Resource)
		if err != nil {
			return nil, usageErr(fmt.Errorf("sink %s: topic: %w", sink, err))
		}
		topics[t] = true
	}
	for t := range topics {
		rep.Topics = append(rep.Topics, t)
	}
	sort.Strings(rep.Topics)
	tmplOnly, _ := kafka.TopicFor(sc.Topic, cluster, "", "")
	other, _ := kafka.TopicFor(sc.Topic, cluster, "x", "y")
	return &kafkaFeed{client: client, brokers: sc.Brokers, sink: sink, cluster: cluster, templated: tmplOnly != other, rep: rep}, nil
}

func (f *kafkaFeed) read(ctx context.Context, state *consumer.State) error {
	rep := f.rep
	if len(rep.Topics) == 0 {
		// Every rule of the sink is not compared: nothing to read.
		if rep.Kafka == nil {
			rep.Kafka = &consumer.KafkaReadResult{}
		}
		return nil
	}
	if rep.Kafka == nil {
		if err := f.ping(ctx); err != nil {
			return err
		}
	}
	o := consumer.KafkaReadOptions{
		Client: f.client, Topics: rep.Topics, Cluster: f.cluster, SkipMissing: f.templated,
		OnError: func(_ *kgo.Record, err error) error {
			rep.BadMessages = append(rep.BadMessages, err.Error())
			return nil
		},
	}
	if rep.Kafka != nil {
		o.Start = rep.Kafka.Next()
	}
	rr, err := consumer.ReadKafka(ctx, state, o)
	if errors.Is(err, consumer.ErrTopicNotFound) {
		return runtimeErr(fmt.Errorf("read sink %s: %w (kubefeed creates it on its first event with provision; else create it)", f.sink, err))
	}
	if err != nil {
		return runtimeErr(fmt.Errorf("read sink %s: %w", f.sink, err))
	}
	if rep.Kafka == nil {
		rep.Kafka = &rr
	} else {
		rep.Kafka.Merge(rr)
	}
	return nil
}

// ping tells unreachable brokers (exit 2) within 10s, as verify tells an
// unreachable NATS server, rather than at the end of --timeout.
func (f *kafkaFeed) ping(ctx context.Context) error {
	cl, err := kgo.NewClient(f.client...)
	if err != nil {
		return usageErr(fmt.Errorf("sink %s: %w", f.sink, err))
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		return runtimeErr(fmt.Errorf("kafka %s not reachable: %w", strings.Join(f.brokers, ","), err))
	}
	return nil
}

// span is the reads as compareAll weighs a stream's: the records read,
// the earliest one's time, and whether a partition had lost older records
// (a stream whose first sequence is above 1).
func (f *kafkaFeed) span() consumer.ReadResult {
	k := f.rep.Kafka
	if k == nil {
		return consumer.ReadResult{}
	}
	rr := consumer.ReadResult{Messages: k.Records, FirstTime: k.FirstTime, StreamFirstSeq: 1}
	if k.Forgot() {
		rr.StreamFirstSeq = 2
	}
	return rr
}
