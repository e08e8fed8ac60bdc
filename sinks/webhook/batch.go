package webhook

import (
	"context"
	"errors"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Defaults of the window.
const (
	defaultLinger      = 50 * time.Millisecond
	defaultMaxInFlight = 4
)

// errClosed fails a publish after Close, and requests Close gave up on.
var errClosed = errors.New("webhook sink: closed")

// batcher is the sink's sinks.Batcher: with batch > 1, up to batch events
// per application/cloudevents-batch+json request, sent when full or
// linger after its first event; otherwise one object's events per request
// group. At most maxInFlight requests run at once, and at most
// batch×maxInFlight objects wait or are in flight (Publish blocks beyond
// that).
type batcher struct {
	*sinks.Batcher
	s     *sink
	batch int
}

func newBatcher(s *sink) *batcher {
	b := &batcher{s: s, batch: max(s.cfg.Batch, 1)}
	linger := s.cfg.Linger.Duration
	if linger <= 0 {
		linger = defaultLinger
	}
	inflight := s.cfg.MaxInFlight
	if inflight <= 0 {
		inflight = defaultMaxInFlight
	}
	b.Batcher = sinks.NewBatcher(sinks.BatcherOptions{
		Batch: b.batch, Linger: linger, MaxInFlight: inflight, Send: b.send, Closed: errClosed,
	})
	return b
}

// Publish hands one object's events to the next request and returns; done
// gets the request's outcome. It blocks while batch×maxInFlight objects
// are collected or in flight.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	return s.batcher.Publish(ctx, events, done)
}

// send posts the entries' events: one batch request (several when one
// object alone has more than batch events), or one request per event
// without batching. A failure fails every entry of the request: each
// object is retried by the exporter, and duplicates carry the same id.
func (b *batcher) send(ctx context.Context, entries []sinks.BatchEntry) []error {
	var events []*event.Event
	for _, e := range entries {
		events = append(events, e.Events...)
	}
	ctx, cancel := context.WithTimeout(ctx, b.s.cfg.Timeout.Duration+time.Second)
	defer cancel()
	if b.s.cfg.Batch > 1 {
		for start := 0; start < len(events); start += b.batch {
			if err := b.s.postBatch(ctx, events[start:min(start+b.batch, len(events))]); err != nil {
				return []error{err}
			}
		}
		return nil
	}
	return []error{b.s.postEach(ctx, events)}
}

// close sends what was collected and waits for the requests in flight,
// until ctx ends; then it cancels them (their objects fail). Every done
// was called when it returns.
func (b *batcher) close(ctx context.Context) { b.Close(ctx) }
