// Package nats is the core NATS sink: publish and flush, for light fan-out.
//
// Core NATS is at most once by nature: a message published while no
// subscriber listens, or lost in a reconnect, is gone, and the server sends
// no acknowledgement. Send returns after the server has received the
// messages (a flush round trip), which is as far as core NATS can promise.
// Use the jetstream sink when every event must be kept.
package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// Options of the sink.
type Options struct {
	Config config.NATSSink
	Logger *zap.Logger
}

// Sink publishes with core NATS.
type Sink struct {
	opts    Options
	nc      *nats.Conn
	subject *natsconn.Subject
}

var _ sinks.Sink = (*Sink)(nil)

// New connects (retrying in the background when no server answers yet).
func New(o Options) (*Sink, error) {
	subj, err := natsconn.CompileSubject(o.Config.Subject)
	if err != nil {
		return nil, err
	}
	nc, err := natsconn.Connect(o.Config.NATSConnection, o.Logger)
	if err != nil {
		return nil, err
	}
	return &Sink{opts: o, nc: nc, subject: subj}, nil
}

// Send publishes the events and flushes.
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nc.IsClosed() {
		return sinks.Permanent(errors.New("nats sink: closed"))
	}
	if !s.nc.IsConnected() {
		return errors.New("nats not connected")
	}
	limit := int(s.nc.MaxPayload())
	for _, e := range events {
		enc, err := sinks.Encode(e, s.opts.Config.Mode, limit)
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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Close flushes and closes the connection.
func (s *Sink) Close(ctx context.Context) error {
	if s.nc.IsConnected() {
		_ = s.nc.Flush()
	}
	s.nc.Close()
	return nil
}
