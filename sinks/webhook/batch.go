package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// entry is one Publish: one object's events and their callback.
type entry struct {
	events []*event.Event
	done   func(error)
}

// batcher collects publishes of different objects into requests: with
// batch > 1, up to batch events per application/cloudevents-batch+json
// request, sent when full or linger after its first event; otherwise one
// object's events per request group. At most maxInFlight requests run at
// once, and at most batch×maxInFlight objects wait or are in flight
// (Publish blocks beyond that).
type batcher struct {
	s      *sink
	batch  int
	linger time.Duration
	// keys bounds the objects collected or in flight (the send window);
	// requests bounds the requests in flight.
	keys, requests *sinks.Window

	mu     sync.Mutex
	cur    []entry
	events int
	timer  *time.Timer
	closed bool

	// ctx ends when Close gives up waiting; wg counts request goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBatcher(s *sink) *batcher {
	b := &batcher{s: s, batch: max(s.cfg.Batch, 1), linger: s.cfg.Linger.Duration}
	if b.linger <= 0 {
		b.linger = defaultLinger
	}
	inflight := s.cfg.MaxInFlight
	if inflight <= 0 {
		inflight = defaultMaxInFlight
	}
	b.keys = sinks.NewWindow(b.batch * inflight)
	b.requests = sinks.NewWindow(inflight)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Publish hands one object's events to the next request and returns; done
// gets the request's outcome. It blocks while batch×maxInFlight objects
// are collected or in flight.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	b := s.batcher
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return sinks.Permanent(errClosed)
	}
	if err := b.keys.Acquire(ctx, 1); errors.Is(err, sinks.ErrWindowClosed) {
		return sinks.Permanent(errClosed)
	} else if err != nil {
		return fmt.Errorf("waiting for the send window: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.keys.Release(1)
		return sinks.Permanent(errClosed)
	}
	if b.s.cfg.Batch <= 1 {
		b.start([]entry{{events: events, done: done}})
		return nil
	}
	if b.events > 0 && b.events+len(events) > b.batch {
		b.flushLocked()
	}
	b.cur = append(b.cur, entry{events: events, done: done})
	b.events += len(events)
	switch {
	case b.events >= b.batch:
		b.flushLocked()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.linger, b.flush)
	}
	return nil
}

func (b *batcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

// flushLocked starts a request with the collected entries.
func (b *batcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.cur) == 0 {
		return
	}
	entries := b.cur
	b.cur, b.events = nil, 0
	b.start(entries)
}

// start sends entries on a goroutine of its own once a request slot is
// free; the goroutines are bounded by the key window.
func (b *batcher) start(entries []entry) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := b.send(entries)
		for _, e := range entries {
			b.keys.Release(1)
			e.done(err)
		}
	}()
}

// send posts the entries' events: one batch request (several when one
// object alone has more than batch events), or one request per event
// without batching. A failure fails every entry of the request: each
// object is retried by the exporter, and duplicates carry the same id.
func (b *batcher) send(entries []entry) error {
	if err := b.requests.Acquire(b.ctx, 1); err != nil {
		return errClosed // Close gave up waiting
	}
	defer b.requests.Release(1)
	var events []*event.Event
	for _, e := range entries {
		events = append(events, e.events...)
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.s.cfg.Timeout.Duration+time.Second)
	defer cancel()
	if b.s.cfg.Batch > 1 {
		for start := 0; start < len(events); start += b.batch {
			if err := b.s.postBatch(ctx, events[start:min(start+b.batch, len(events))]); err != nil {
				return err
			}
		}
		return nil
	}
	return b.s.postEach(ctx, events)
}

// close sends what was collected and waits for the requests in flight,
// until ctx ends; then it cancels them (their objects fail). Every done
// was called when it returns.
func (b *batcher) close(ctx context.Context) {
	b.mu.Lock()
	b.closed = true
	b.flushLocked()
	b.mu.Unlock()
	b.keys.Close() // a Publish waiting for the window fails now
	idle := make(chan struct{})
	go func() { b.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		b.cancel()
		<-idle
	}
	b.cancel()
}
