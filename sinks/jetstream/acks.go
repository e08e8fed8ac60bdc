package jetstream

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The sink publishes on the core connection and reads the PubAcks itself:
// nats.go's PublishMsgAsync costs, per message, a timer, a future with two
// channels and a goroutine hand-over (about 14 µs of client CPU per event
// in BenchmarkPublishWindow against a server in another process, 8 µs
// without them; the sink decodes the ack as nats.go does, about 0.6 µs of
// each, see BenchmarkPubAck). Each message carries a reply subject <inbox>.<seq>; one
// wildcard subscription <inbox>.* delivers every ack into a channel, and
// the ack table finds the message by its sequence number and resolves its
// batch. Who reads the channel is reader.go's concern. One ticker fails
// the messages whose ack did not come within the ack timeout; a lost
// connection fails every message still waiting, since their acks will not
// come on the new one.

// pending is one published message awaiting its PubAck.
type pending struct {
	b        *pubBatch
	id       string // the event id (Nats-Msg-Id)
	subject  string
	deadline time.Time
}

// pubBatch is one Publish: done gets the first error of its messages (or
// encErr, the event that could not be encoded after them) once every
// message was resolved.
type pubBatch struct {
	slots     int
	remaining int // messages not resolved, plus one while Publish registers them
	err       error
	encErr    error
	done      func(error)
}

// acker is the ack table.
type acker struct {
	prefix  string // the reply subjects' "<inbox>."
	stream  string // named in errors
	timeout time.Duration
	// release frees a batch's window slots before its done runs (done
	// may publish again).
	release func(slots int)
	// onNoStream runs when no stream answered a publish (503).
	onNoStream func()

	mu    sync.Mutex
	next  uint64 // the sequence number of the next message
	low   uint64 // no message below low is waiting
	table map[uint64]pending
	// batches counts the batches whose done has not returned; idle is
	// closed once closing is set and none is left.
	batches  int
	closing  bool
	idle     chan struct{}
	idleOnce sync.Once

	// in receives the acks (the subscription's channel); kick wakes the
	// reader when a publish made the table non-empty.
	in      chan *nats.Msg
	kick    chan struct{}
	lastPub atomic.Int64 // UnixNano of the last register
	lastGap atomic.Int64 // nanoseconds between the last two registers
	stop    chan struct{}
	wg      sync.WaitGroup

	published, duplicates atomic.Int64 // acks, and acks with Duplicate set

	// answers runs the dones of batches the reader goroutine finished:
	// a done may publish again and wait for the window, and the reader
	// must go on reading the acks and timeouts that free it.
	answers answerQueue
}

// newAcker makes the table for a window of maxPending messages.
func newAcker(inbox, stream string, timeout time.Duration, maxPending int, release func(int), onNoStream func()) *acker {
	a := &acker{prefix: inbox + ".", stream: stream, timeout: timeout, release: release, onNoStream: onNoStream,
		table: map[uint64]pending{}, idle: make(chan struct{}), stop: make(chan struct{}),
		// Room for every ack of a full window, and strays: a full channel
		// drops an ack (nats.go counts a slow consumer) and its message
		// times out, to be retried as a duplicate.
		in: make(chan *nats.Msg, 2*maxPending+1024), kick: make(chan struct{}, 1)}
	a.answers = answerQueue{wake: make(chan struct{}, 1), quit: a.stop}
	return a
}

// register enters the messages of b into the table and returns the
// sequence number of the first (the others follow). b holds one more
// count until Publish calls handedOver.
func (a *acker) register(b *pubBatch, msgs []outMsg) uint64 {
	now := time.Now()
	deadline := now.Add(a.timeout)
	a.lastGap.Store(now.UnixNano() - a.lastPub.Swap(now.UnixNano()))
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.table) == 0 {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	first := a.next
	for i := range msgs {
		a.table[first+uint64(i)] = pending{b: b, id: msgs[i].id, subject: msgs[i].subject, deadline: deadline}
	}
	a.next += uint64(len(msgs))
	b.remaining = len(msgs) + 1
	a.batches++
	return first
}

// handedOver ends Publish's part: messages [from, to) were not published
// (err says why) and leave the table. It reports whether nothing was
// published at all, in which case b is forgotten and its done never
// called; otherwise b finishes once its last ack is resolved.
func (a *acker) handedOver(b *pubBatch, from, to, first uint64, err error) (nothingSent bool) {
	a.mu.Lock()
	for seq := from; seq < to; seq++ {
		if _, ok := a.table[seq]; ok {
			delete(a.table, seq)
			b.remaining--
		}
	}
	if from == first {
		a.batches--
		a.mu.Unlock()
		a.maybeIdle()
		return true
	}
	a.mu.Unlock()
	a.resolve(b, err, true) // Publish's own count
	return false
}

// reply is the reply subject of message seq.
func (a *acker) reply(buf []byte, seq uint64) []byte {
	buf = append(buf[:0], a.prefix...)
	return strconv.AppendUint(buf, seq, 36)
}

// onAck reads one ack; inline: on a publisher's goroutine (else the
// reader's, whose dones run on the answers goroutine).
func (a *acker) onAck(m *nats.Msg, inline bool) {
	if len(m.Subject) <= len(a.prefix) {
		return
	}
	seq, err := strconv.ParseUint(m.Subject[len(a.prefix):], 36, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	p, ok := a.table[seq]
	if !ok { // timed out or failed already
		a.mu.Unlock()
		return
	}
	delete(a.table, seq)
	a.mu.Unlock()
	err = a.outcome(m, p)
	a.resolve(p.b, err, inline)
}

// outcome reads one ack.
func (a *acker) outcome(m *nats.Msg, p pending) error {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		a.onNoStream()
		return fmt.Errorf("publish %s: %w", p.id, noStream(a.stream, p.subject))
	}
	ack, err := parsePubAck(m.Data)
	switch {
	case err != nil:
		return fmt.Errorf("publish %s: %w: %v", p.id, jetstream.ErrInvalidJSAck, err)
	case ack.apiErr != nil:
		return fmt.Errorf("publish %s: %w", p.id, classify(ack.apiErr))
	case !ack.stored:
		return fmt.Errorf("publish %s: %w: no stream named", p.id, jetstream.ErrInvalidJSAck)
	case ack.stream != a.stream:
		// Stream a is gone and another one holds the subject now: the
		// event is not where the sink's readers look for it. The next
		// publish checks the stream again.
		a.onNoStream()
		return fmt.Errorf("publish %s: stored by stream %q, not by stream %s: %w", p.id, ack.stream, a.stream, jetstream.ErrInvalidJSAck)
	}
	a.published.Add(1)
	if ack.duplicate {
		a.duplicates.Add(1)
	}
	return nil
}

// errNoStream is wrapped by the error of a publish that no stream took.
var errNoStream = errors.New("no stream answered")

func noStream(stream, subject string) error {
	return fmt.Errorf("%w on subject %s (is stream %s there, and does it hold the subject?): %w", errNoStream, subject, stream, jetstream.ErrNoStreamResponse)
}

// resolve records one message's outcome and finishes its batch after the
// last one.
func (a *acker) resolve(b *pubBatch, err error, inline bool) {
	a.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
	}
	b.remaining--
	fin := b.remaining == 0
	a.mu.Unlock()
	if fin {
		a.finish(b, inline)
	}
}

// finish frees b's slots and calls its done, then lets Close know; not
// inline (on the reader goroutine), the done runs on the answers
// goroutine.
func (a *acker) finish(b *pubBatch, inline bool) {
	err := b.err
	if err == nil {
		err = b.encErr
	}
	a.release(b.slots)
	answer := func() {
		b.done(err)
		a.mu.Lock()
		a.batches--
		a.mu.Unlock()
		a.maybeIdle()
	}
	if inline {
		answer()
		return
	}
	a.answers.push(answer)
}

// answerQueue runs functions in order on one goroutine, started with the
// first and kept until quit closes and nothing is queued: a goroutine
// started per answer grows its stack anew each time (copying it cost a
// tenth of the sink's CPU). A push after that starts one again.
type answerQueue struct {
	mu      sync.Mutex
	q       []func()
	started bool
	busy    bool // a function runs
	wake    chan struct{}
	quit    <-chan struct{}
}

func (aq *answerQueue) push(f func()) {
	aq.mu.Lock()
	aq.q = append(aq.q, f)
	if !aq.started {
		aq.started = true
		go aq.run()
	}
	aq.mu.Unlock()
	select {
	case aq.wake <- struct{}{}:
	default:
	}
}

func (aq *answerQueue) run() {
	for {
		aq.mu.Lock()
		aq.busy = false
		if len(aq.q) == 0 {
			aq.q = aq.q[:0]
			select {
			case <-aq.quit:
				// Gone only with nothing queued; a later push starts a
				// goroutine again.
				aq.started = false
				aq.mu.Unlock()
				return
			default:
			}
			aq.mu.Unlock()
			select {
			case <-aq.wake:
			case <-aq.quit:
			}
			continue
		}
		f := aq.q[0]
		aq.q[0], aq.q = nil, aq.q[1:]
		aq.busy = true
		aq.mu.Unlock()
		f()
	}
}

func (a *acker) maybeIdle() {
	a.mu.Lock()
	idle := a.closing && a.batches == 0
	a.mu.Unlock()
	if idle {
		a.idleOnce.Do(func() { close(a.idle) })
	}
}

// expire fails the messages whose ack is overdue at now. Deadlines grow
// with sequence numbers, so it looks only at the oldest.
func (a *acker) expire(now time.Time) {
	var failed []*pubBatch
	a.mu.Lock()
	for ; a.low < a.next; a.low++ {
		p, ok := a.table[a.low]
		if !ok {
			continue
		}
		if now.Before(p.deadline) {
			break
		}
		delete(a.table, a.low)
		if p.b.err == nil {
			p.b.err = fmt.Errorf("publish %s: no ack within %s: %w", p.id, a.timeout, jetstream.ErrAsyncPublishTimeout)
		}
		if p.b.remaining--; p.b.remaining == 0 {
			failed = append(failed, p.b)
		}
	}
	a.mu.Unlock()
	for _, b := range failed {
		a.finish(b, false)
	}
}

// failAll fails every message still waiting with err.
func (a *acker) failAll(err error) {
	var failed []*pubBatch
	a.mu.Lock()
	for seq, p := range a.table {
		delete(a.table, seq)
		if p.b.err == nil {
			p.b.err = err
		}
		if p.b.remaining--; p.b.remaining == 0 {
			failed = append(failed, p.b)
		}
	}
	a.low = a.next
	a.mu.Unlock()
	for _, b := range failed {
		a.finish(b, false)
	}
}

// close stops new batches (the caller stops Publish first) and returns a
// channel closed once every batch's done returned.
func (a *acker) close() <-chan struct{} {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	a.maybeIdle()
	return a.idle
}
