package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// errClosed fails a publish after Close, and the acks Close did not wait
// for.
var errClosed = errors.New("jetstream sink: closed")

// window bounds the messages awaiting an ack (maxPending) and carries the
// publishes in flight, in publish order, to the ack reader.
type window struct {
	slots chan struct{}
	// acquireMu makes taking a publish's slots all or nothing.
	acquireMu sync.Mutex
	// mu orders hand-overs: a batch enters acks under it, so the reader
	// sees batches in the order their messages were published.
	mu     sync.Mutex
	closed bool
	acks   chan *pubBatch
	// abort, closed by Close when its context ends, fails the acks still
	// awaited.
	abort      chan struct{}
	abortOnce  sync.Once
	readerDone chan struct{}
}

func newWindow(size int) *window {
	return &window{slots: make(chan struct{}, size), acks: make(chan *pubBatch, size),
		abort: make(chan struct{}), readerDone: make(chan struct{})}
}

// pubBatch is one Publish: its messages' futures and its callback. err,
// when set, is reported after the futures resolved (a message of the batch
// could not be published).
type pubBatch struct {
	futures []jetstream.PubAckFuture
	slots   int
	err     error
	done    func(error)
}

// acquire takes n slots of the window, or none when ctx ends first. One
// publish acquires at a time, so two publishes that each need most of the
// window never hold parts of it while waiting for each other.
func (w *window) acquire(ctx context.Context, n int) error {
	w.acquireMu.Lock()
	defer w.acquireMu.Unlock()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			w.release(i)
			return fmt.Errorf("waiting for the publish window: %w", err)
		}
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			w.release(i)
			return fmt.Errorf("waiting for the publish window: %w", ctx.Err())
		}
	}
	return nil
}

func (w *window) release(n int) {
	for i := 0; i < n; i++ {
		<-w.slots
	}
}

// Publish publishes the events asynchronously (in order, with their ids
// as Nats-Msg-Id) and returns; done gets the outcome once every ack
// arrived. It blocks while maxPending messages await their acks.
func (s *Sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.ensureStream(ctx); err != nil {
		return err
	}
	n := min(len(events), cap(s.win.slots))
	if err := s.win.acquire(ctx, n); err != nil {
		return err
	}
	msgs, encErr := s.encode(events)
	s.win.mu.Lock()
	defer s.win.mu.Unlock()
	if s.win.closed {
		s.win.release(n)
		return sinks.Permanent(errClosed)
	}
	b := &pubBatch{slots: n, done: done, err: encErr}
	for _, m := range msgs {
		f, err := s.js.PublishMsgAsync(m.msg, jetstream.WithMsgID(m.id))
		if err != nil {
			b.err = fmt.Errorf("publish %s: %w", m.id, err)
			break
		}
		b.futures = append(b.futures, f)
	}
	if len(b.futures) == 0 {
		s.win.release(n)
		if b.err == nil {
			b.err = errors.New("nothing to publish")
		}
		return b.err
	}
	s.win.acks <- b // never blocks: a batch holds at least one slot
	return nil
}

type outMsg struct {
	msg *nats.Msg
	id  string
}

// encode builds the messages of events. It stops at the first event that
// cannot be sent and returns that (permanent) error with the messages
// before it, which are published and acknowledged before the error is
// reported.
func (s *Sink) encode(events []*event.Event) ([]outMsg, error) {
	limit := int(s.nc.MaxPayload())
	if limit > 0 {
		limit -= 512 // Nats-Msg-Id and protocol overhead
	}
	out := make([]outMsg, 0, len(events))
	for _, e := range events {
		enc, err := sinks.Encode(e, s.opts.Config.Mode, limit)
		subject := s.subject.Render(e)
		if errors.Is(err, sinks.ErrTooLarge) {
			if s.opts.Config.DeadLetterSubject == "" {
				s.dropped.Add(1)
				return out, sinks.Permanent(fmt.Errorf("event %s: %w; no deadLetterSubject configured", e.ID, err))
			}
			s.log.Warn("event too large; sending a stub to the dead-letter subject", zap.String("id", e.ID), zap.Error(err))
			if enc, err = sinks.Encode(sinks.Truncate(e, sinks.TruncatedAll), s.opts.Config.Mode, limit); err != nil {
				return out, sinks.Permanent(err)
			}
			subject = s.opts.Config.DeadLetterSubject
			s.deadLettered.Add(1)
		} else if err != nil {
			return out, sinks.Permanent(err)
		} else if enc.Event != e {
			s.shrunk.Add(1) // a dead-lettered stub is counted above, not here
		}
		msg := nats.NewMsg(subject)
		msg.Data = enc.Body
		for _, h := range enc.Headers {
			msg.Header.Set(h[0], h[1])
		}
		out = append(out, outMsg{msg: msg, id: e.ID})
	}
	return out, nil
}

// readAcks waits for the acks of the batches in publish order (JetStream
// acks them in that order too) and calls each batch's done. It ends when
// Close closed the window and every batch was answered.
func (s *Sink) readAcks() {
	defer close(s.win.readerDone)
	for b := range s.win.acks {
		err := s.await(b.futures)
		s.win.release(b.slots)
		if err == nil {
			err = b.err
		}
		b.done(err)
	}
}

// await waits for the acks of futures; the first error wins, but every
// future is waited for (or abandoned when Close gives up).
func (s *Sink) await(futures []jetstream.PubAckFuture) error {
	var first error
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			s.published.Add(1)
			if ack.Duplicate {
				s.duplicates.Add(1)
			}
		case err := <-f.Err():
			if first == nil {
				first = classify(err)
			}
		case <-s.win.abort:
			if first == nil {
				first = fmt.Errorf("waiting for ack: %w", errClosed)
			}
		}
	}
	return first
}

// Send publishes the events and waits for all their acks (or ctx).
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	res := make(chan error, 1)
	if err := s.Publish(ctx, events, func(err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for ack: %w", ctx.Err())
	}
}

// Close waits (bounded by ctx) for the outstanding acks, fails those that
// did not come, and closes the connection. Every done was called when it
// returns.
func (s *Sink) Close(ctx context.Context) error {
	s.win.mu.Lock()
	if !s.win.closed {
		s.win.closed = true
		close(s.win.acks)
	}
	s.win.mu.Unlock()
	select {
	case <-s.win.readerDone:
	case <-ctx.Done():
		s.win.abortOnce.Do(func() { close(s.win.abort) })
		<-s.win.readerDone
	}
	s.nc.Close()
	return nil
}
