package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// DeliveryTimeout bounds one Send: its records are given up (and the Send
// fails, retryably) when the broker has not acknowledged them by then, or
// earlier when the caller's context ends.
const DeliveryTimeout = 30 * time.Second

// Options of the sink. Config is required (defaults applied); Cluster names
// the cluster in topic templates.
type Options struct {
	Config  config.KafkaSink
	Cluster string
	Logger  *zap.Logger
}

// Stats counts what the sink saw.
type Stats struct {
	Produced     int64 // records acknowledged, gap copies and stubs included
	GapRecords   int64 // records of gap markers (one per partition)
	Shrunk       int64 // events sent truncated to fit maxMessageBytes
	DeadLettered int64 // stubs sent to the dead-letter topic
	Dropped      int64 // too large and no dead-letter topic
}

// Sink produces to Kafka.
type Sink struct {
	opts   Options
	cl     *kgo.Client
	topic  *topicTemplate
	topics *topics
	limit  int // the largest encoded event, headers included
	log    *zap.Logger
	closed atomic.Bool

	produced, gapRecords, shrunk, deadLettered, dropped atomic.Int64
}

var _ sinks.Sink = (*Sink)(nil)

// errClosed is returned by Send after Close.
var errClosed = errors.New("kafka sink closed")

// New creates the producer and, when the brokers answer, checks (or
// creates) the topic and the dead-letter topic. Unreachable brokers are not
// an error: the topics are checked on first send, which fails (retryably)
// until then. A missing topic without provision, a topic whose
// max.message.bytes is below maxMessageBytes, an unreadable password file
// or rejected credentials are errors.
func New(ctx context.Context, o Options) (*Sink, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	c := o.Config
	tmpl, err := compileTopic(c.Topic, o.Cluster)
	if err != nil {
		return nil, err
	}
	opts, err := clientOptions(c, o.Logger)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s := &Sink{
		opts: o, cl: cl, topic: tmpl, log: o.Logger,
		limit:  c.MaxMessageBytes - recordOverhead,
		topics: &topics{cl: cl, adm: kadm.NewClient(cl), provision: c.Provision, maxBytes: c.MaxMessageBytes, ready: map[string]bool{}},
	}
	var check []string
	if tmpl.static {
		t, err := tmpl.render(&event.Event{Cluster: o.Cluster})
		if err != nil {
			cl.Close()
			return nil, err
		}
		check = append(check, t)
	}
	if c.DeadLetterTopic != "" {
		check = append(check, c.DeadLetterTopic)
	}
	for _, t := range check {
		if err := s.topics.ensure(ctx, t); err != nil {
			if errors.Is(err, errTopicMissing) || errors.Is(err, errTopicLimit) || isAuthError(err) {
				cl.Close()
				return nil, err
			}
			s.log.Warn("kafka not reachable yet; topics are checked on first send", zap.Strings("brokers", c.Brokers), zap.Error(err))
			break
		}
	}
	return s, nil
}

// Send produces the events' records and waits until the broker
// acknowledged all of them.
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	if s.closed.Load() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, DeliveryTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// An event that can never be produced (too large, no dead-letter
	// topic) does not hold back the others of the batch — a gap marker
	// before it above all: they are produced, then its error returned.
	var recs []*kgo.Record
	var permanent error
	for _, e := range events {
		rs, err := s.records(ctx, e)
		if err != nil {
			if !sinks.IsPermanent(err) {
				return err
			}
			if permanent == nil {
				permanent = err
			}
			continue
		}
		recs = append(recs, rs...)
	}
	if err := s.produce(ctx, recs); err != nil {
		return err
	}
	return permanent
}

// records encodes one event into its records: one, or one per partition
// for a gap marker, or a stub for the dead-letter topic.
func (s *Sink) records(ctx context.Context, e *event.Event) ([]*kgo.Record, error) {
	c := s.opts.Config
	topic, err := s.topic.render(e)
	if err != nil {
		return nil, sinks.Permanent(fmt.Errorf("event %s: %w", e.ID, err))
	}
	enc, err := sinks.Encode(e, c.Mode, s.limit)
	switch {
	case errors.Is(err, sinks.ErrTooLarge):
		if c.DeadLetterTopic == "" {
			s.dropped.Add(1)
			return nil, sinks.Permanent(fmt.Errorf("event %s: %w; no deadLetterTopic configured", e.ID, err))
		}
		s.log.Warn("event too large; sending a stub to the dead-letter topic", zap.String("id", e.ID), zap.Error(err))
		if enc, err = sinks.Encode(sinks.Truncate(e, sinks.TruncatedAll), c.Mode, s.limit); err != nil {
			return nil, sinks.Permanent(err)
		}
		topic = c.DeadLetterTopic
		s.deadLettered.Add(1)
	case err != nil:
		return nil, sinks.Permanent(err)
	case enc.Event != e:
		s.shrunk.Add(1)
	}
	if err := s.topics.ensure(ctx, topic); err != nil {
		return nil, fmt.Errorf("event %s: %w", e.ID, err)
	}
	r := record(topic, enc)
	if !isGap(e) || topic == c.DeadLetterTopic {
		return []*kgo.Record{r}, nil
	}
	n, err := s.topics.partitions(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("gap %s: %w", e.ID, err)
	}
	s.gapRecords.Add(int64(n))
	return toEveryPartition(ctx, r, n), nil
}

// produce hands the records to kgo with the send's context and collects
// every promise; it returns at the first error or when ctx ends (records
// still buffered are then failed by kgo, or delivered: either way the
// caller retries them, and duplicates carry the same id).
func (s *Sink) produce(ctx context.Context, recs []*kgo.Record) error {
	results := make(chan error, len(recs))
	for _, r := range recs {
		s.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				err = classify(r, err)
				if errors.Is(err, errRecordTooLarge) {
					s.topics.forget(r.Topic)
				}
			}
			results <- err
		})
	}
	for range recs {
		select {
		case err := <-results:
			if err != nil {
				return err
			}
			s.produced.Add(1)
		case <-ctx.Done():
			return fmt.Errorf("waiting for acks: %w", ctx.Err())
		}
	}
	return nil
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{Produced: s.produced.Load(), GapRecords: s.gapRecords.Load(), Shrunk: s.shrunk.Load(), DeadLettered: s.deadLettered.Load(), Dropped: s.dropped.Load()}
}

// Close waits (bounded by ctx) for buffered records and closes the client.
func (s *Sink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.cl.Flush(ctx)
	s.cl.Close()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
