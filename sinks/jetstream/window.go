package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kubefeed/kubefeed/sinks"
)

// window bounds the messages awaiting an ack (maxPending) and orders the
// hand-overs of concurrent publishes.
type window struct {
	// slots: one per message awaiting its ack, taken all or nothing.
	slots *sinks.Window
	// mu orders hand-overs: one publish's messages go out under it, in
	// the order the publishes took it. It also guards the reusable
	// outgoing message.
	mu     sync.Mutex
	closed bool
}

func newWindow(size int) *window {
	return &window{slots: sinks.NewWindow(size)}
}

// acquire takes n slots of the window, or none when ctx ends or the sink
// closes first.
func (w *window) acquire(ctx context.Context, n int) error {
	if err := w.slots.Acquire(ctx, n); errors.Is(err, sinks.ErrWindowClosed) {
		return errClosed
	} else if err != nil {
		return fmt.Errorf("waiting for the publish window: %w", err)
	}
	return nil
}

// release gives n slots back; it never blocks.
func (w *window) release(n int) { w.slots.Release(n) }
