package sinks

import (
	"context"
	"fmt"

	"github.com/kubefeed/kubefeed/event"
)

// AsyncSink is a Sink that keeps a window of sends in flight: the exporter
// hands it one object's events and takes the next object while the ack is
// on its way, so that a sink one network hop away is not limited to one
// round trip per worker. Sinks that do not implement it are driven through
// Send, one object per worker at a time.
//
// Contract, in addition to Sink's:
//   - Publish hands the events to the destination (in order, after
//     everything handed over by calls that returned before it) and returns;
//     it blocks while the sink's window is full, until ctx ends. When it
//     returns an error, nothing was handed over and done is never called.
//   - When Publish returned nil, done is called exactly once, with nil
//     when the destination acknowledged every event, or with the error of
//     the first that failed (classified as for Send: retryable unless
//     Permanent). done may run on a goroutine of the sink, must not block
//     for long, and may call Publish again.
//   - Publish is called concurrently, with events of different objects;
//     the caller never has two publishes of one object outstanding.
//   - ctx bounds the hand-over only; the sink bounds the wait for the ack
//     with its own timeouts, so that done always comes.
//   - Close waits (bounded by its ctx) for the outstanding acks and
//     returns only after every done was called (with an error for those
//     not acknowledged).
type AsyncSink interface {
	Sink
	Publish(ctx context.Context, events []*event.Event, done func(error)) error
}

// Await is the blocking Send of an AsyncSink: it publishes through publish
// and waits for the outcome its done gets, or for ctx's end (the events
// then perhaps delivered), which it reports as waiting, wrapped in what.
func Await(ctx context.Context, what string, publish func(done func(error)) error) error {
	res := make(chan error, 1)
	if err := publish(func(err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}
