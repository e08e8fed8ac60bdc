package jetstream

import (
	"context"
	"fmt"
	"sync"
)

// window bounds the messages awaiting an ack (maxPending) and orders the
// hand-overs of concurrent publishes.
type window struct {
	slots chan struct{}
	// acquireMu makes taking a publish's slots all or nothing.
	acquireMu sync.Mutex
	// mu orders hand-overs: one publish's messages go out under it, in
	// the order the publishes took it. It also guards the reusable
	// outgoing message.
	mu     sync.Mutex
	closed bool
}

func newWindow(size int) *window {
	return &window{slots: make(chan struct{}, size)}
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
