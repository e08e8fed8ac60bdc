package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options of Wrap. Path is required.
type Options struct {
	// Name of the wrapped sink, written into records.
	Name   string
	Path   string
	Logger *zap.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// sink is a sink whose permanent failures go to a dead-letter file.
type sink struct {
	inner  sinks.Sink
	file   *file
	opts   Options
	log    *zap.Logger
	closed atomic.Bool
	// sifting counts rejected publishes being sorted out after their ack.
	sifting sync.WaitGroup
}

var _ sinks.AsyncSink = (*sink)(nil)

// siftTimeout bounds sorting out a rejected publish, one event at a time.
const siftTimeout = 30 * time.Second

// Publish publishes through the wrapped sink's window when it has one (else
// it sends and calls done at once). A permanent failure is sorted out as
// Send does it, on a goroutine of its own: the ack path never blocks on
// the one-by-one resends or the dead-letter file.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if s.closed.Load() {
		return errors.New("sink closed")
	}
	as, ok := s.inner.(sinks.AsyncSink)
	if !ok {
		done(s.Send(ctx, events))
		return nil
	}
	s.sifting.Add(1)
	err := as.Publish(ctx, events, func(err error) {
		if err == nil || !sinks.IsPermanent(err) {
			s.sifting.Done()
			done(err)
			return
		}
		go func() {
			defer s.sifting.Done()
			sctx, cancel := context.WithTimeout(context.Background(), siftTimeout)
			defer cancel()
			done(s.sift(sctx, events, err))
		}()
	})
	if err != nil {
		s.sifting.Done()
	}
	return err
}

// Wrap opens the dead-letter file and puts it behind inner.
func Wrap(inner sinks.Sink, o Options) (*sink, error) {
	if o.Path == "" {
		return nil, errors.New("dead letter: file is required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f, err := openFile(o.Path)
	if err != nil {
		return nil, err
	}
	return &sink{inner: inner, file: f, opts: o, log: o.Logger}, nil
}

// Send sends through the wrapped sink. A permanent failure is written to
// the dead-letter file and returned as a permanent error wrapping
// sinks.ErrDeadLettered; a failed dead-letter write is retryable.
func (s *sink) Send(ctx context.Context, events []*event.Event) error {
	if s.closed.Load() {
		return errors.New("sink closed")
	}
	err := s.inner.Send(ctx, events)
	if err == nil || !sinks.IsPermanent(err) || ctx.Err() != nil {
		return err
	}
	return s.sift(ctx, events, err)
}

// sift keeps in the dead-letter file the events of a send that failed with
// err (permanent) which the destination rejects on their own.
func (s *sink) sift(ctx context.Context, events []*event.Event, err error) error {
	if len(events) == 1 {
		return s.keep(events, err)
	}
	// Find the events the destination rejects: send them one by one.
	var first error
	for _, e := range events {
		one := []*event.Event{e}
		err := s.inner.Send(ctx, one)
		switch {
		case err == nil:
			continue
		case !sinks.IsPermanent(err):
			return err
		}
		if kerr := s.keep(one, err); !errors.Is(kerr, sinks.ErrDeadLettered) {
			return kerr
		} else if first == nil {
			first = kerr
		}
	}
	if first == nil {
		return nil // every event went through on its own
	}
	return first
}

func (s *sink) keep(events []*event.Event, cause error) error {
	if err := s.file.write(s.opts.Name, events, cause, s.opts.Now()); err != nil {
		// Retryable: the events stay queued until they are delivered or kept.
		return fmt.Errorf("%w (kept for retry: the events were rejected: %v)", err, cause)
	}
	for _, e := range events {
		s.log.Warn("event rejected permanently, written to the dead-letter file",
			zap.String("id", e.ID), zap.String("file", s.file.path), zap.Error(cause))
	}
	return sinks.Permanent(fmt.Errorf("%w to %s: %w", sinks.ErrDeadLettered, s.file.path, cause))
}

// Close closes the wrapped sink, then the file.
func (s *sink) Close(ctx context.Context) error {
	s.closed.Store(true)
	err := s.inner.Close(ctx)
	s.sifting.Wait()
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	return err
}
