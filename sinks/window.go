package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrWindowClosed ends every wait for a Window once it is closed, and
// every Acquire after that.
var ErrWindowClosed = errors.New("window closed")

// Window bounds what a sink has in flight: size slots, taken by Acquire and
// given back by Release. A sink that pipelines (publishes awaiting acks,
// objects collected or written, requests running) takes its slots before
// handing something over and gives them back when it is answered.
//
// Acquire takes its n slots all or nothing, and one acquirer waits at a
// time: two publishes that each need most of the window never hold parts
// of it while waiting for each other (with nothing else in flight, neither
// would ever complete). Waits honour their context and end when the Window
// is closed. Release never blocks, so an ack path may call it.
type Window struct {
	size int
	// turn is held by the one Acquire that may take slots; a channel, not
	// a mutex, so that waiting for it honours ctx and Close too.
	turn chan struct{}
	// freed wakes the turn's holder after a Release (capacity 1: a
	// pending wake-up; a stale one costs one more look).
	freed   chan struct{}
	closing chan struct{}
	close   sync.Once

	mu      sync.Mutex
	held    int
	waiting bool // the turn's holder waits for freed slots
}

// NewWindow returns a Window of size slots (at least 1).
func NewWindow(size int) *Window {
	return &Window{
		size:    max(size, 1),
		turn:    make(chan struct{}, 1),
		freed:   make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
}

// Size is the number of slots.
func (w *Window) Size() int { return w.size }

// Acquire takes n slots (0 ≤ n ≤ Size), or none: it returns ctx's error
// when ctx ends first, ErrWindowClosed when the Window is closed first. A
// ctx already done or a Window already closed fails it even with slots
// free. n == 0 takes nothing and returns nil.
func (w *Window) Acquire(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	if n > w.size {
		return fmt.Errorf("%d slots of a window of %d: it can never have them", n, w.size)
	}
	if err := w.check(ctx); err != nil {
		return err
	}
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.closing:
		return ErrWindowClosed
	}
	defer func() {
		w.mu.Lock()
		w.waiting = false
		w.mu.Unlock()
		<-w.turn
	}()
	for {
		if err := w.check(ctx); err != nil {
			return err
		}
		w.mu.Lock()
		if w.held+n <= w.size {
			w.held += n
			w.mu.Unlock()
			return nil
		}
		w.waiting = true
		w.mu.Unlock()
		select {
		case <-w.freed:
		case <-ctx.Done():
		case <-w.closing:
		}
	}
}

// check reports why an Acquire must not take slots now, if it must not.
func (w *Window) check(ctx context.Context) error {
	select {
	case <-w.closing:
		return ErrWindowClosed
	default:
	}
	return ctx.Err()
}

// Release gives n slots back; it never blocks. Giving back more than is
// held is a bug of the caller; the Window then counts none held.
func (w *Window) Release(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.held = max(w.held-n, 0)
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// Close ends every wait for slots, and fails every later Acquire, with
// ErrWindowClosed. Slots held stay held until they are released.
func (w *Window) Close() {
	w.close.Do(func() { close(w.closing) })
}

// Held is the number of slots taken and not given back.
func (w *Window) Held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held
}

// Waiting reports whether an Acquire waits for slots to be released (for
// tests, and to tell a full window in errors and metrics).
func (w *Window) Waiting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}
