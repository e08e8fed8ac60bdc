package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// deliveryTimeout bounds the wait for one publish's acks: it fails,
// retryably, when the broker has not acknowledged its records by then (kgo
// gives the records up then too, where it can do so without breaking the
// idempotent producer's sequence).
const deliveryTimeout = 30 * time.Second

// Options of the sink. Config is required (defaults applied); Cluster names
// the cluster in topic templates.
type Options struct {
	Config  Config
	Cluster string
	Logger  *zap.Logger
}

// Stats counts what the sink delivered. A publish (or Send) counts once,
// when it is answered for good: acknowledged, or failed permanently. An
// attempt that failed retryably counts nothing, even for the records the
// broker took before the failure; its retry counts them.
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
	// ctx is the records' context: it ends when Close gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	// win bounds the records handed to kgo and not yet resolved (acked
	// or failed), one slot per record: a publish takes its slots all at
	// once before producing and gives them back when kgo has answered
	// every record of it, so kgo never buffers more than the window (plus
	// the records of one publish larger than the window, which then waits
	// for the whole window and holds all of it).
	win     *sinks.Window
	answers *answers
	// mu guards closed against registering publishes, the list of
	// outstanding publishes (handed over, not answered: head is the
	// oldest) and the count of sweeps.
	mu         sync.Mutex
	closed     atomic.Bool
	head, tail *batch
	sweeps     int64
	swept      chan struct{}  // closed when sweep returned
	pending    sync.WaitGroup // handed over, done not yet returned

	produced, gapRecords, shrunk, deadLettered, dropped atomic.Int64
}

var _ sinks.AsyncSink = (*Sink)(nil)

// errClosed fails a publish after Close, and the acks Close did not wait
// for. It is retryable: what it fails was not delivered.
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
	window := c.MaxInFlight
	if window <= 0 {
		window = defaultMaxInFlight
	}
	opts, err := clientOptions(c, window, o.Logger)
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
		win:    sinks.NewWindow(window),
		swept:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var check []string
	if tmpl.static {
		t, err := tmpl.render(&event.Event{Cluster: o.Cluster})
		if err != nil {
			s.cancel()
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
				s.cancel()
				cl.Close()
				return nil, err
			}
			s.log.Warn("kafka not reachable yet; topics are checked on first send", zap.Strings("brokers", c.Brokers), zap.Error(err))
			break
		}
	}
	s.answers = newAnswers(s.pending.Done)
	go s.sweep()
	return s, nil
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{Produced: s.produced.Load(), GapRecords: s.gapRecords.Load(), Shrunk: s.shrunk.Load(), DeadLettered: s.deadLettered.Load(), Dropped: s.dropped.Load()}
}

// Close waits (bounded by ctx) for the acks of every publish handed over,
// then closes the client. When ctx ends first, the publishes still
// waiting fail (retryably) at once. Every done was called when it
// returns; Publish and Send fail after it.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed.Swap(true)
	s.mu.Unlock()
	if already {
		return nil
	}
	s.win.Close() // a Publish waiting for the window fails now
	called := make(chan struct{})
	go func() {
		s.pending.Wait()
		close(called)
	}()
	var err error
	select {
	case <-called:
	case <-ctx.Done():
		open := s.outstanding(math.MaxInt64)
		for _, b := range open {
			b.abort()
		}
		<-called
		if len(open) > 0 {
			err = fmt.Errorf("close: %d publishes not acknowledged: %w", len(open), ctx.Err())
		}
	}
	s.cancel()
	<-s.swept
	s.cl.Close() // fails what kgo still holds: their promises find them answered
	s.answers.stop()
	return err
}
