// Package nats is the core NATS sink: publish and flush, for light fan-out.
//
// Core NATS is at most once by nature: a message published while no
// subscriber listens, or lost in a reconnect, is gone, and the server sends
// no acknowledgement. Send returns after the server has received the
// messages (a flush round trip), which is as far as core NATS can promise.
// Publishes gather while a flush runs (sinks.Group): one round trip
// covers every object published meanwhile.
// Use the jetstream sink when every event must be kept.
package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// Options of the sink.
type Options struct {
	Config Config
	Logger *zap.Logger
}

// sink publishes with core NATS.
type sink struct {
	opts    Options
	nc      *nats.Conn
	subject *natsconn.Subject
	group   *sinks.Group
}

// window is how many objects may wait for the next flush.
const window = 4096

// flushTimeout bounds one flush round trip.
const flushTimeout = 10 * time.Second

var _ sinks.AsyncSink = (*sink)(nil)

// New connects (retrying in the background when no server answers yet).
func New(o Options) (*sink, error) {
	subj, err := natsconn.CompileSubject(o.Config.Subject)
	if err != nil {
		return nil, err
	}
	nc, err := natsconn.Connect(o.Config.NATSConnection, o.Logger)
	if err != nil {
		return nil, err
	}
	s := &sink{opts: o, nc: nc, subject: subj}
	s.group = sinks.NewGroup(window, s.write)
	return s, nil
}

// Publish queues the events for the next publish-and-flush; done is called
// once the server has received them.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if s.nc.IsClosed() {
		return errors.New("nats sink: closed")
	}
	return s.group.Publish(ctx, events, done)
}

// Send publishes the events and returns after the flush.
func (s *sink) Send(ctx context.Context, events []*event.Event) error {
	if s.nc.IsClosed() {
		return errors.New("nats sink: closed")
	}
	return s.group.Send(ctx, events)
}

// write publishes every entry's messages and flushes once. An event that
// cannot be encoded fails its own entry; a lost connection or a failed
// flush fails them all (retryably).
func (s *sink) write(entries []sinks.GroupEntry) []error {
	errs := make([]error, len(entries))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if !s.nc.IsConnected() {
		return fail(errors.New("nats not connected"))
	}
	for i, en := range entries {
		if err := s.publish(en.Events); err != nil {
			if !sinks.IsPermanent(err) {
				return fail(err)
			}
			errs[i] = err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fail(fmt.Errorf("flush: %w", err))
	}
	return errs
}

// publish hands one object's messages to the connection.
func (s *sink) publish(events []*event.Event) error {
	limit := int(s.nc.MaxPayload())
	for _, e := range events {
		enc, err := sinks.EncodeAs(nil, e, s.opts.Config.format(), limit)
		if err != nil {
			return sinks.Permanent(err)
		}
		msg := nats.NewMsg(s.subject.Render(e))
		msg.Data = enc.Body
		for _, h := range enc.Headers {
			msg.Header.Set(h[0], h[1])
		}
		if err := s.nc.PublishMsg(msg); err != nil {
			if errors.Is(err, nats.ErrMaxPayload) {
				return sinks.Permanent(err)
			}
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// Close waits (bounded by ctx) for the pending publishes, flushes and
// closes the connection.
func (s *sink) Close(ctx context.Context) error {
	_ = s.group.Close(ctx)
	if s.nc.IsConnected() {
		_ = s.nc.Flush()
	}
	s.nc.Close()
	return nil
}
