package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// defaultAckTimeout is how long one publish may wait for its PubAck.
const defaultAckTimeout = 10 * time.Second

// Options of the sink. Config is required; Cluster names the cluster in
// subjects.
type Options struct {
	Config  Config
	Cluster string
	Logger  *zap.Logger

	ackTimeout time.Duration // defaultAckTimeout when zero; shorter in tests
}

// Stats counts what the sink saw.
type Stats struct {
	Published    int64 // acked, duplicates included
	Duplicates   int64 // acks with Duplicate set
	Shrunk       int64 // events sent truncated to fit max payload
	DeadLettered int64 // stubs sent to the dead-letter subject
	Dropped      int64 // too large and no dead-letter subject
}

// Sink publishes to a JetStream stream.
type Sink struct {
	opts    Options
	nc      *nats.Conn
	js      jetstream.JetStream
	subject *natsconn.Subject
	log     *zap.Logger
	// ready: the stream was checked and no publish found it missing
	// since; checked: it was checked once.
	ready, checked atomic.Bool
	win            *window
	acks           *acker
	status         chan nats.Status // connection losses, for acks
	// The outgoing message, its Nats-Msg-Id value and reply subject,
	// reused under win.mu.
	out       nats.Msg
	msgID     []string
	reply     []byte
	closeOnce sync.Once

	shrunk, deadLettered, dropped atomic.Int64
}

var _ sinks.AsyncSink = (*Sink)(nil)

// New connects and, when the server answers, provisions or checks the
// stream. An unreachable server is not an error: the connection keeps
// trying and Send fails (retryably) until it succeeds. A missing stream
// with provisioning off is an error.
func New(ctx context.Context, o Options) (*Sink, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	c := o.Config
	subj, err := natsconn.CompileSubject(c.Subject)
	if err != nil {
		return nil, err
	}
	// No reconnect buffer: a publish while disconnected fails at once
	// instead of waiting out its ack timeout, and fewer outcomes are unknown.
	nc, err := natsconn.Connect(c.NATSConnection, o.Logger, nats.ReconnectBufSize(-1))
	if err != nil {
		return nil, err
	}
	// The client's API for the stream; publishes go on the core
	// connection (acks.go).
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if o.ackTimeout <= 0 {
		o.ackTimeout = defaultAckTimeout
	}
	s := &Sink{opts: o, nc: nc, js: js, subject: subj, log: o.Logger, win: newWindow(max(c.MaxPending, 1)),
		out: nats.Msg{Header: nats.Header{}}, msgID: make([]string, 1)}
	s.acks = newAcker(nc.NewInbox(), c.Stream, o.ackTimeout, max(c.MaxPending, 1), s.win.release, func() { s.ready.Store(false) })
	if _, err := nc.ChanSubscribe(s.acks.prefix+"*", s.acks.in); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats subscribe for acks: %w", err)
	}
	s.status = nc.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	s.acks.start(s.status)
	if err := s.ensureStream(ctx); err != nil {
		if errors.Is(err, errUnreachable) && isAuthError(nc.LastError()) {
			_ = s.Close(ctx)
			return nil, fmt.Errorf("nats %s: %w", natsconn.Redact(c.NATSConnection.Servers), nc.LastError())
		}
		if errors.Is(err, errUnreachable) {
			s.log.Warn("nats not reachable yet; the stream is checked on first send", zap.String("servers", natsconn.Redact(c.NATSConnection.Servers)))
			return s, nil
		}
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

var errUnreachable = errors.New("nats not reachable")

// ensureStream creates or updates the stream (provision) or checks that it
// exists and covers the subjects kubefeed publishes to.
func (s *Sink) ensureStream(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	if !s.nc.IsConnected() {
		// Give a first connection attempt a moment. A check again after a
		// publish no stream answered (acks.go) fails at once while
		// disconnected, as the publish itself would.
		deadline := time.Now().Add(2 * time.Second)
		if s.checked.Load() {
			deadline = time.Now()
		}
		for !s.nc.IsConnected() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if !s.nc.IsConnected() {
			if last := s.nc.LastError(); last != nil {
				return fmt.Errorf("%w: %v", errUnreachable, last)
			}
			return errUnreachable
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := s.opts.Config
	want := s.subject.StreamSubject(s.opts.Cluster)
	if p := c.Provision; p != nil {
		sc := jetstream.StreamConfig{
			Name:       c.Stream,
			Subjects:   p.Subjects,
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			Replicas:   max(p.Replicas, 1),
			MaxAge:     p.MaxAge.Duration,
			Duplicates: p.DuplicateWindow.Duration,
		}
		if len(sc.Subjects) == 0 {
			sc.Subjects = []string{want}
			// The dead-letter subject needs a stream too (config validation
			// checks explicit subjects cover it).
			if dl := c.DeadLetterSubject; dl != "" && !natsconn.Matches(want, dl) {
				sc.Subjects = append(sc.Subjects, dl)
			}
		}
		if p.Storage == "memory" {
			sc.Storage = jetstream.MemoryStorage
		}
		switch p.Retention {
		case "interest":
			sc.Retention = jetstream.InterestPolicy
		case "workqueue":
			sc.Retention = jetstream.WorkQueuePolicy
		}
		if _, err := s.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", c.Stream, err)
		}
		s.checked.Store(true)
		s.ready.Store(true)
		return nil
	}
	st, err := s.js.Stream(ctx, c.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s not found: create it (subjects %s) or set provision in the sink's config", c.Stream, want)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.Stream, err)
	}
	subjects := st.CachedInfo().Config.Subjects
	sample := s.subject.Render(&event.Event{Cluster: s.opts.Cluster, APIVersion: "v1", Resource: "configmaps", Namespace: "default", Name: "x", Type: event.Added.Type()})
	if !holds(subjects, sample) {
		return fmt.Errorf("stream %s does not hold subject %s (its subjects: %v); add %s", c.Stream, sample, subjects, want)
	}
	if dl := c.DeadLetterSubject; dl != "" && !holds(subjects, dl) {
		return fmt.Errorf("stream %s does not hold deadLetterSubject %s (its subjects: %v); add it to the stream", c.Stream, dl, subjects)
	}
	s.checked.Store(true)
	s.ready.Store(true)
	return nil
}

func holds(filters []string, subject string) bool {
	for _, f := range filters {
		if natsconn.Matches(f, subject) {
			return true
		}
	}
	return false
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrAccountAuthExpired) || errors.Is(err, nats.ErrPermissionViolation)
}

// classify marks what retrying cannot fix.
func classify(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return sinks.Permanent(err)
	}
	return err
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{Published: s.acks.published.Load(), Duplicates: s.acks.duplicates.Load(), Shrunk: s.shrunk.Load(), DeadLettered: s.deadLettered.Load(), Dropped: s.dropped.Load()}
}
