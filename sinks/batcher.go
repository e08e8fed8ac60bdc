package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// ErrBatcherClosed is the default error of a Publish after Close and of
// the requests Close gave up on (BatcherOptions.Closed replaces it).
var ErrBatcherClosed = errors.New("batcher closed")

// BatchEntry is one Publish as a request holds it: one object's events.
// An Alone entry is in a request of its own.
type BatchEntry struct {
	Events []*event.Event
	Alone  bool
}

// BatchSend sends one request of entries and returns their outcome: nil
// or one error for all of them, or one error per entry (in the order of
// entries) when the destination answers per object. ctx ends when Close
// gives up waiting; the callback bounds its own I/O with a timeout.
type BatchSend func(ctx context.Context, entries []BatchEntry) []error

// BatcherOptions configure a Batcher. Send is required.
type BatcherOptions struct {
	// Batch is the number of events a request collects (a Publish with
	// more is a request of its own). ≤ 1: each Publish is a request of
	// its own, sent at once.
	Batch int
	// Linger is how long a request waits for more events after its first
	// (≤ 0: it is sent at once, by the timer's goroutine).
	Linger time.Duration
	// MaxInFlight is the number of requests sent at once (≤ 0: 1).
	MaxInFlight int
	// Send sends one request.
	Send BatchSend
	// Alone, when set, tells the objects whose events must go in a
	// request of their own (BatchEntry.Alone); it runs under the
	// Batcher's lock and must be quick.
	Alone func(events []*event.Event) bool
	// Closed fails a Publish after Close and the entries of requests
	// Close gave up on, retryably. nil: ErrBatcherClosed.
	Closed error
}

// Batcher collects publishes of different objects into requests of up
// to Batch events, sent when full or Linger after their first event. At
// most MaxInFlight requests run at once, and at most Batch×MaxInFlight
// objects are collected or in flight (Publish blocks beyond that). It is
// the Publish of a sink whose destination takes several objects per
// request (AsyncSink's contract): each object's done gets its request's
// outcome for it.
type Batcher struct {
	batch  int
	linger time.Duration
	send   BatchSend
	alone  func([]*event.Event) bool
	closed error
	// keys bounds the objects collected or in flight (the send window);
	// requests bounds the requests in flight.
	keys, requests *Window

	mu      sync.Mutex
	cur     []batchItem
	events  int
	timer   *time.Timer
	closing bool

	// ctx ends when Close gives up waiting; wg counts request goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// batchItem is one Publish: its entry and its callback.
type batchItem struct {
	entry BatchEntry
	done  func(error)
}

// NewBatcher returns a Batcher; it starts nothing until Publish.
func NewBatcher(o BatcherOptions) *Batcher {
	b := &Batcher{
		batch: max(o.Batch, 1), linger: o.Linger, send: o.Send, alone: o.Alone, closed: o.Closed,
	}
	if b.closed == nil {
		b.closed = ErrBatcherClosed
	}
	inflight := max(o.MaxInFlight, 1)
	b.keys = NewWindow(b.batch * inflight)
	b.requests = NewWindow(inflight)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Publish hands one object's events to the next request and returns;
// done gets that request's outcome for them. It blocks while
// Batch×MaxInFlight objects are collected or in flight, until ctx ends.
// After Close it fails with Closed, retryably: a closed sink refused
// nothing, the events are the next start's.
func (b *Batcher) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.keys.Acquire(ctx, 1); errors.Is(err, ErrWindowClosed) {
		return b.closed
	} else if err != nil {
		return fmt.Errorf("waiting for the send window: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		b.keys.Release(1)
		return b.closed
	}
	it := batchItem{entry: BatchEntry{Events: events}, done: done}
	if b.alone != nil {
		it.entry.Alone = b.alone(events)
	}
	if it.entry.Alone || b.batch <= 1 {
		b.start([]batchItem{it})
		return nil
	}
	if b.events > 0 && b.events+len(events) > b.batch {
		b.flushLocked()
	}
	b.cur = append(b.cur, it)
	b.events += len(events)
	switch {
	case b.events >= b.batch:
		b.flushLocked()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.linger, b.flush)
	}
	return nil
}

func (b *Batcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

// flushLocked starts a request with the collected entries.
func (b *Batcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.cur) == 0 {
		return
	}
	items := b.cur
	b.cur, b.events = nil, 0
	b.start(items)
}

// start sends items on a goroutine of its own once a request slot is
// free; the goroutines are bounded by the key window.
func (b *Batcher) start(items []batchItem) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		errs := b.request(items)
		for i, it := range items {
			b.keys.Release(1)
			it.done(errs[i])
		}
	}()
}

// request waits for a request slot, sends, and returns each item's
// outcome.
func (b *Batcher) request(items []batchItem) []error {
	errs := make([]error, len(items))
	if err := b.requests.Acquire(b.ctx, 1); err != nil {
		for i := range errs {
			errs[i] = b.closed // Close gave up waiting
		}
		return errs
	}
	defer b.requests.Release(1)
	entries := make([]BatchEntry, len(items))
	for i, it := range items {
		entries[i] = it.entry
	}
	got := b.send(b.ctx, entries)
	switch len(got) {
	case 0:
	case len(errs):
		copy(errs, got)
	case 1:
		for i := range errs {
			errs[i] = got[0]
		}
	default: // a bug of the callback: no entry may pass for delivered
		err := fmt.Errorf("batcher: send returned %d outcomes for %d entries", len(got), len(entries))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// Close sends what was collected and waits for the requests in flight,
// until ctx ends; then it cancels them (the ctx of Send ends, and the
// entries still waiting for a request slot fail with Closed). Every done
// was called when it returns. Publish fails from its start on.
func (b *Batcher) Close(ctx context.Context) {
	b.mu.Lock()
	b.closing = true
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
