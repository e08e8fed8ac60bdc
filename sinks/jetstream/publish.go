package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// errClosed fails a publish after Close, and the acks Close did not wait
// for.
var errClosed = errors.New("jetstream sink: closed")

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
	n := min(len(events), s.win.slots.Size())
	if err := s.win.acquire(ctx, n); err != nil {
		return err
	}
	msgs, encErr := s.encode(events)
	// The connection copied every body it was handed (and the rest will
	// not be sent): the buffers go back for the next publish.
	defer releaseBodies(msgs)
	s.win.mu.Lock()
	if s.win.closed {
		s.win.mu.Unlock()
		s.win.release(n)
		return errClosed
	}
	if len(msgs) == 0 {
		s.win.mu.Unlock()
		s.win.release(n)
		if encErr == nil {
			encErr = errors.New("nothing to publish")
		}
		return encErr
	}
	b := &pubBatch{slots: n, done: done, encErr: encErr}
	first := s.acks.register(b, msgs)
	sent := 0
	var err error
	for ; sent < len(msgs); sent++ {
		if err = s.send(&msgs[sent], first+uint64(sent)); err != nil {
			err = fmt.Errorf("publish %s: %w", msgs[sent].id, classify(err))
			break
		}
	}
	s.win.mu.Unlock()
	// Outside the hand-over lock: done may run here and publish again.
	if s.acks.handedOver(b, first+uint64(sent), first+uint64(len(msgs)), first, err) {
		s.win.release(n)
		return err
	}
	s.acks.drain(drainMax, true) // the acks of earlier publishes (reader.go)
	return nil
}

// send hands one message to the connection, with the reply subject of
// its ack. The caller holds win.mu: the outgoing message is reused, since
// the connection copies it into its buffer before PublishMsg returns.
func (s *Sink) send(m *outMsg, seq uint64) error {
	out := &s.out
	if len(m.headers) > 0 || len(out.Header) != 1 {
		clear(out.Header)
		for _, h := range m.headers {
			out.Header.Set(h[0], h[1])
		}
	}
	s.msgID[0] = m.id
	out.Header[nats.MsgIdHdr] = s.msgID
	out.Subject, out.Data = m.subject, m.body
	s.reply = s.acks.reply(s.reply, seq)
	out.Reply = string(s.reply)
	err := s.nc.PublishMsg(out)
	out.Data = nil
	return err
}

// outMsg is one encoded event.
type outMsg struct {
	id, subject string
	body        []byte
	headers     [][2]string
	// buf holds body's storage, taken from bodies, until the message
	// was handed to the connection (nil: body is its own).
	buf *[]byte
}

// bodies holds encoding buffers: the connection copies a message into
// its own buffer before PublishMsg returns, so an encoded body is not
// needed past the publish, and allocating one per event was most of the
// bytes (and so of the collections) a drain allocates.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBody bounds the buffers kept: an event near 1 MiB does not
// pin a buffer that size.
const maxPooledBody = 64 << 10

// takeBody returns a buffer for one encoding.
func takeBody() *[]byte { return bodies.Get().(*[]byte) }

// putBody returns a buffer once nothing refers to its bytes.
func putBody(bp *[]byte) {
	if bp == nil || cap(*bp) > maxPooledBody {
		return
	}
	*bp = (*bp)[:0]
	bodies.Put(bp)
}

// releaseBodies gives back the buffers of msgs and drops their bodies.
func releaseBodies(msgs []outMsg) {
	for i := range msgs {
		putBody(msgs[i].buf)
		msgs[i].buf, msgs[i].body = nil, nil
	}
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
		bp := takeBody()
		enc, err := sinks.EncodeAs(*bp, e, s.opts.Config.format(), limit)
		subject := s.subject.Render(e)
		if errors.Is(err, sinks.ErrTooLarge) {
			if s.opts.Config.DeadLetterSubject == "" {
				s.dropped.Add(1)
				putBody(bp)
				return out, sinks.Permanent(fmt.Errorf("event %s: %w; no deadLetterSubject configured", e.ID, err))
			}
			s.log.Warn("event too large; sending a stub to the dead-letter subject", zap.String("id", e.ID), zap.Error(err))
			if enc, err = sinks.EncodeAs(*bp, sinks.Truncate(e, sinks.TruncatedAll), s.opts.Config.format(), limit); err != nil {
				putBody(bp)
				return out, sinks.Permanent(err)
			}
			subject = s.opts.Config.DeadLetterSubject
			s.deadLettered.Add(1)
		} else if err != nil {
			putBody(bp)
			return out, sinks.Permanent(err)
		} else if enc.Event != e {
			s.shrunk.Add(1) // a dead-lettered stub is counted above, not here
		}
		if s.opts.Config.Mode != sinks.ModeBinary {
			*bp = enc.Body[:0] // keep what the encoding grew the buffer to
		}
		out = append(out, outMsg{id: e.ID, subject: subject, body: enc.Body, headers: enc.Headers, buf: bp})
	}
	return out, nil
}

// Send publishes the events and waits for all their acks (or ctx).
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	return sinks.Await(ctx, "waiting for ack", func(done func(error)) error { return s.Publish(ctx, events, done) })
}

// Close waits (bounded by ctx) for the outstanding acks, fails those that
// did not come, and closes the connection. Every done was called when it
// returns.
func (s *Sink) Close(ctx context.Context) error {
	s.win.mu.Lock()
	s.win.closed = true
	s.win.mu.Unlock()
	s.win.slots.Close() // a Publish waiting for the window fails now
	idle := s.acks.close()
	select {
	case <-idle:
	case <-ctx.Done():
		s.acks.failAll(fmt.Errorf("waiting for ack: %w", errClosed))
		<-idle
	}
	s.closeOnce.Do(func() {
		s.acks.halt()
		s.nc.RemoveStatusListener(s.status)
		s.nc.Close()
	})
	return nil
}
