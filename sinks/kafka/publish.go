package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// errNoAck fails a publish whose records the broker did not acknowledge
// within deliveryTimeout.
var errNoAck = errors.New("no ack from the broker")

// Publish hands the events' records to the producer, in order, and
// returns; done gets the outcome once the broker acknowledged every record
// (nil), or with the first error: retryable for broker and network
// trouble, permanent for an event that can never be written. It blocks
// while maxInFlight records await their acks, until ctx ends. ctx bounds
// only the hand-over (topic checks included); the records are given up
// after deliveryTimeout, or when Close gives up waiting.
func (s *Sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	b := &batch{s: s, done: done}
	if err := s.encode(ctx, events, &b.encoded); err != nil {
		return err
	}
	recs := b.recs
	if len(recs) == 0 {
		// Nothing to hand over: the outcome is known now.
		s.count(b.tally)
		if b.permanent != nil {
			return b.permanent
		}
		if !s.track(b) {
			return errClosed
		}
		b.answer(nil, false)
		return nil
	}
	n := min(len(recs), s.win.Size())
	if err := s.acquire(ctx, n); err != nil {
		return err
	}
	b.slots = n
	b.left.Store(int64(len(recs)))
	if !s.track(b) {
		s.win.Release(n)
		return errClosed
	}
	// TryProduce never blocks: the window keeps kgo's buffer below its
	// limit, so ErrMaxBuffered means something else went wrong, and it
	// fails this publish (retryably) rather than the hand-over.
	if len(recs) == 1 {
		s.cl.TryProduce(s.ctx, recs[0], b.promise)
		return nil
	}
	b.chain(recs)
	return nil
}

// acquire takes n slots of the window (n ≤ its size), or none when ctx
// ends or the sink closes first. A publish of more records than the
// window holds (a gap marker to every partition) takes all of it.
func (s *Sink) acquire(ctx context.Context, n int) error {
	err := s.win.Acquire(ctx, n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sinks.ErrWindowClosed):
		return errClosed
	default:
		return fmt.Errorf("waiting for the publish window (%d records in flight): %w", s.win.Held(), err)
	}
}

// chain hands the records of a publish over one after another, each once
// the one before it was acknowledged. Handed over together, a request kgo
// failed could let a later record reach the topic ahead of an earlier one
// that the retry sends again (a uid change's deletion after its new
// incarnation). A publish of several records is rare: a uid change, or a
// gap marker's copies to every partition.
func (b *batch) chain(recs []*kgo.Record) {
	b.s.cl.TryProduce(b.s.ctx, recs[0], func(r *kgo.Record, err error) {
		b.promise(r, err)
		if len(recs) == 1 {
			return
		}
		if err != nil || b.failed.Load() || b.answered.Load() {
			// Not produced after a failed one (its retry sends them all
			// again, in order), nor for a publish already answered.
			b.fail(len(recs) - 1)
			return
		}
		go b.chain(recs[1:]) // never hand over on kgo's promise goroutine
	})
}

// batch is one Publish in flight: its records resolve through promise on
// kgo's promise goroutine; it is answered once, by its last record, by its
// delivery timeout (the sink's sweep) or by Close.
type batch struct {
	s    *Sink
	done func(error)
	encoded
	slots int

	left     atomic.Int64 // records kgo has not answered yet
	acked    atomic.Int64
	failed   atomic.Bool
	mu       sync.Mutex
	err      error // of the first record that failed
	answered atomic.Bool

	// The sink's list of outstanding publishes, in the order they were
	// handed over (guarded by the sink's mu), and the sweep at which
	// this one was.
	prev, next *batch
	listed     bool
	born       int64
}

// promise is kgo's callback for each record.
func (b *batch) promise(r *kgo.Record, err error) {
	if err != nil {
		err = classify(r, err)
		if errors.Is(err, errRecordTooLarge) {
			b.s.topics.forget(r.Topic)
		}
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
		b.failed.Store(true)
	} else {
		b.acked.Add(1)
	}
	b.resolved(1)
}

// fail resolves n records that were not handed over, after one that
// failed.
func (b *batch) fail(n int) { b.resolved(int64(n)) }

// resolved counts n records answered; the last one gives the window's
// slots back and answers the publish.
func (b *batch) resolved(n int64) {
	if b.left.Add(-n) > 0 {
		return
	}
	b.s.win.Release(b.slots)
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err == nil {
		err = b.permanent
	}
	b.answer(err, true)
}

// expire answers a publish the broker did not acknowledge in time. Its
// records keep their slots until kgo answers them (or Close ends it), so
// the window still bounds what kgo buffers.
func (b *batch) expire() {
	b.answer(fmt.Errorf("waiting for acks: %w within %v", errNoAck, deliveryTimeout), false)
}

// abort answers a publish Close stopped waiting for.
func (b *batch) abort() {
	b.answer(fmt.Errorf("waiting for acks: %w", errClosed), false)
}

// answer calls done once (on the sink's answers goroutine). Stats count
// a publish answered for good, with what was acknowledged.
func (b *batch) answer(err error, settled bool) {
	if b.answered.Swap(true) {
		return
	}
	if settled && (err == nil || sinks.IsPermanent(err)) {
		t := b.tally
		t.produced = b.acked.Load()
		b.s.count(t)
	}
	b.s.untrack(b)
	b.s.answers.push(b.done, err)
}

// track registers b as outstanding, unless the sink is closed.
func (s *Sink) track(b *batch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	b.born = s.sweeps
	b.prev, b.listed = s.tail, true
	if s.tail != nil {
		s.tail.next = b
	} else {
		s.head = b
	}
	s.tail = b
	s.pending.Add(1)
	return true
}

// untrack forgets b; its done is on its way (pending counts it until
// then).
func (s *Sink) untrack(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !b.listed {
		return
	}
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		s.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		s.tail = b.prev
	}
	b.prev, b.next, b.listed = nil, nil, false
}

// outstanding returns the publishes handed over and not answered, oldest
// first, that were listed before sweep number before (all of them:
// math.MaxInt64).
func (s *Sink) outstanding(before int64) []*batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*batch
	for b := s.head; b != nil && b.born < before; b = b.next {
		out = append(out, b)
	}
	return out
}

// sweepEvery is the period of the sweep that answers the publishes not
// acknowledged within deliveryTimeout (one timer for all of them rather
// than one a publish): they are answered up to sweepEvery late.
const sweepEvery = time.Second

// sweep answers, every sweepEvery until Close, the publishes handed over
// more than deliveryTimeout ago and not acknowledged yet.
func (s *Sink) sweep() {
	defer close(s.swept)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		s.sweepOnce()
	}
}

// sweepOnce counts a sweep and answers the publishes listed more than
// deliveryTimeout ago: listed between sweeps born and born+1, a publish is
// at sweep now more than (now-born-1)×sweepEvery old. Counted in sweeps,
// not read from a clock: a tick handled late can make that up to
// sweepEvery early, which costs a retry (a duplicate at worst), never an
// event.
func (s *Sink) sweepOnce() {
	s.mu.Lock()
	s.sweeps++
	now := s.sweeps
	s.mu.Unlock()
	for _, b := range s.outstanding(now - int64(deliveryTimeout/sweepEvery)) {
		b.expire()
	}
}

// Send produces the events and waits until the broker acknowledged all of
// them, or ctx ends (bounded by deliveryTimeout).
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	return sinks.Await(ctx, "waiting for acks", func(done func(error)) error { return s.Publish(ctx, events, done) })
}

// count adds t to the stats.
func (s *Sink) count(t tally) {
	s.produced.Add(t.produced)
	s.gapRecords.Add(t.gapRecords)
	s.shrunk.Add(t.shrunk)
	s.deadLettered.Add(t.deadLettered)
	s.dropped.Add(t.dropped)
}
