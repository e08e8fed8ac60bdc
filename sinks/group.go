package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// errClosed is returned by a Group's Publish after Close.
var errClosed = errors.New("sink closed")

// GroupEntry is one Publish waiting in a Group: one object's events.
type GroupEntry struct {
	Events []*event.Event
	Done   func(error)
}

// Group turns a sink that writes locally (a file, a terminal) into an
// AsyncSink with group commit: publishes gather while one write runs, and
// the next write takes all of them at once (one write call, one flush or
// fsync), then calls their dones. At most window objects wait or are being
// written; Publish blocks beyond that. The writing goroutine exists only
// while there is something to write.
type Group struct {
	write func([]GroupEntry) []error
	// slots bounds the entries pending or being written.
	slots *Window
	// linger: a write whose batch is small waits up to this long after the
	// batch's first entry arrived for more (fewer writes and fsyncs when
	// events trickle in); kick ends the wait when the batch fills or the
	// Group closes.
	linger  time.Duration
	kick    chan struct{}
	firstAt time.Time // when the first entry of pending arrived

	mu      sync.Mutex
	pending []GroupEntry
	writing []GroupEntry // the batch the running write holds
	running bool
	closed  bool
	idle    chan struct{} // closed when no write runs; replaced when one starts
}

// NewGroup returns a Group whose writes go through write: it returns nil
// when every entry is written (durably, as the sink promises), or one error
// per entry (nil for those written).
func NewGroup(window int, write func([]GroupEntry) []error) *Group {
	idle := make(chan struct{})
	close(idle)
	return &Group{write: write, slots: NewWindow(window), idle: idle, kick: make(chan struct{}, 1)}
}

// lingerFull is the batch size at which a write stops lingering.
const lingerFull = 256

// SetLinger makes small writes wait up to d for more entries; call it
// before the first Publish.
func (g *Group) SetLinger(d time.Duration) { g.linger = d }

// Publish queues events for the next write; done gets the outcome.
func (g *Group) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.isClosed() {
		// Not waiting for a slot: a write Close gave up on may hold them.
		return errClosed
	}
	if err := g.slots.Acquire(ctx, 1); errors.Is(err, ErrWindowClosed) {
		return errClosed
	} else if err != nil {
		return fmt.Errorf("waiting for the write window: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.slots.Release(1)
		return errClosed
	}
	if len(g.pending) == 0 {
		g.firstAt = time.Now()
	}
	g.pending = append(g.pending, GroupEntry{Events: events, Done: once(done)})
	if g.linger > 0 && g.full() {
		g.kickLoop()
	}
	if !g.running {
		g.running = true
		g.idle = make(chan struct{})
		go g.loop(g.idle)
	}
	return nil
}

// full reports whether the pending batch need not wait for more: it
// reached lingerFull, or it fills the window (nothing more can come).
// g.mu is held.
func (g *Group) full() bool {
	return len(g.pending) >= min(lingerFull, g.slots.Size())
}

// kickLoop ends a lingering wait.
func (g *Group) kickLoop() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// lingerWait waits until the pending batch is full, the Group closes, or
// linger has passed since the batch's first entry.
func (g *Group) lingerWait() {
	g.mu.Lock()
	wait := g.linger - time.Since(g.firstAt)
	small := !g.full() && !g.closed
	g.mu.Unlock()
	if !small || wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.kick:
	}
}

func (g *Group) loop(idle chan struct{}) {
	for {
		if g.linger > 0 {
			g.lingerWait()
		}
		g.mu.Lock()
		batch := g.pending
		g.pending, g.writing = nil, batch
		if len(batch) == 0 {
			g.running = false
			close(idle)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		errs := g.write(batch)
		for i, e := range batch {
			g.slots.Release(1)
			var err error
			if errs != nil {
				err = errs[i]
			}
			e.Done(err)
		}
	}
}

// Send publishes events and waits for their write.
func (g *Group) Send(ctx context.Context, events []*event.Event) error {
	return Await(ctx, "waiting for the write", func(done func(error)) error { return g.Publish(ctx, events, done) })
}

// Close refuses further publishes and waits until what was published is
// written (every done called). When ctx ends first, every entry not yet
// reported fails (retryably: it is sent again later) before Close returns,
// and a write that finishes later reports nothing.
func (g *Group) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	idle := g.idle
	g.mu.Unlock()
	g.slots.Close() // a Publish waiting for a slot fails now
	g.kickLoop()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	err := fmt.Errorf("waiting for pending writes: %w", ctx.Err())
	g.mu.Lock()
	left := append(append([]GroupEntry(nil), g.writing...), g.pending...)
	// The loop gives back the slots of the batch it writes; those of the
	// entries taken from pending here are given back now.
	g.slots.Release(len(g.pending))
	g.pending = nil
	g.mu.Unlock()
	for _, e := range left {
		e.Done(err)
	}
	return err
}

// once returns done guarded so that only its first call counts.
func once(done func(error)) func(error) {
	var o sync.Once
	return func(err error) { o.Do(func() { done(err) }) }
}

// isClosed reports whether Close was called.
func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
