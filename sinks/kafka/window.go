package kafka

import (
	"context"
	"fmt"
	"sync"
)

// window bounds the records handed to kgo and not yet resolved (acked or
// failed): maxInFlight slots, one per record. A publish takes its slots
// all at once before producing and gives them back when kgo has answered
// every record of it, so kgo never buffers more than the window (plus the
// records of one publish larger than the window, which then waits for the
// whole window and holds all of it).
type window struct {
	slots chan struct{}
	// turn makes taking a publish's slots all or nothing: one publish
	// acquires at a time, so two publishes that each need most of the
	// window never hold parts of it while waiting for each other. It is a
	// channel, not a mutex, so that waiting for the turn honours ctx too.
	turn chan struct{}
	// closing ends every wait for slots (Close).
	closing chan struct{}
}

func newWindow(size int) *window {
	return &window{slots: make(chan struct{}, size), turn: make(chan struct{}, 1), closing: make(chan struct{})}
}

// size is the number of slots.
func (w *window) size() int { return cap(w.slots) }

// acquire takes n slots (n ≤ size), or none when ctx ends or the sink
// closes first.
func (w *window) acquire(ctx context.Context, n int) error {
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the publish window: %w", ctx.Err())
	case <-w.closing:
		return errClosed
	}
	defer func() { <-w.turn }()
	for i := 0; i < n; i++ {
		select {
		case w.slots <- struct{}{}:
			continue
		case <-ctx.Done():
			w.release(i)
			return fmt.Errorf("waiting for the publish window (%d records in flight): %w", w.size(), ctx.Err())
		case <-w.closing:
			w.release(i)
			return errClosed
		}
	}
	return nil
}

// release gives n slots back; it never blocks.
func (w *window) release(n int) {
	for i := 0; i < n; i++ {
		<-w.slots
	}
}

// answer is one outcome on its way to its done.
type answer struct {
	done func(error)
	err  error
}

// answers calls the publishes' dones on a goroutine of the sink, in the
// order they were answered. kgo runs every promise of the client on one
// goroutine that must never block; a done may take a while or even call
// Publish (which may wait for the window, that only promises free), so
// dones never run there.
type answers struct {
	mu      sync.Mutex
	queue   []answer
	wake    chan struct{} // capacity 1: a pending wake-up
	quit    chan struct{}
	stopped chan struct{}
	// called counts every done that returned (Close waits for them).
	called func()
}

func newAnswers(called func()) *answers {
	a := &answers{wake: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{}), called: called}
	go a.run()
	return a
}

// push queues done(err); it never blocks.
func (a *answers) push(done func(error), err error) {
	a.mu.Lock()
	a.queue = append(a.queue, answer{done: done, err: err})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *answers) run() {
	defer close(a.stopped)
	for {
		a.mu.Lock()
		q := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, x := range q {
			x.done(x.err)
			a.called()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-a.wake:
		case <-a.quit:
			a.mu.Lock()
			left := len(a.queue)
			a.mu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// stop ends the goroutine once the queue is empty. Nothing may be pushed
// after it.
func (a *answers) stop() {
	close(a.quit)
	<-a.stopped
}
