package app

import (
	"context"
	"errors"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// errFenced is what a fenced sink returns once sends were aborted. It is
// retryable on purpose: the keys stay undelivered, so that the checkpoint
// leaves them to the next leader.
var errFenced = errors.New("sends aborted: this replica may no longer hold the leader lease")

// fencedSink cancels a sink's in-flight sends, and refuses new ones, once
// abort ends. The exporter drains its queues when its context ends; the
// fence turns that drain into a quick abort when the Lease is lost, while a
// SIGTERM drain (abort still live) delivers everything.
type fencedSink struct {
	sinks.Sink
	abort context.Context
}

var _ sinks.Sink = (*fencedSink)(nil)

// fence wraps every sink of m.
func fence(m map[string]sinks.Sink, abort context.Context) map[string]sinks.Sink {
	out := make(map[string]sinks.Sink, len(m))
	for name, s := range m {
		out[name] = &fencedSink{Sink: s, abort: abort}
	}
	return out
}

// Send forwards to the sink under a context that also ends with abort. A
// send cut short by abort reports errFenced whatever the sink said, so
// that a sink that calls a cancelled context permanent cannot make the
// exporter record the events as delivered.
func (f *fencedSink) Send(ctx context.Context, evs []*event.Event) error {
	if f.abort.Err() != nil {
		return errFenced
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(f.abort, func() { cancel(errFenced) })
	err := f.Sink.Send(ctx, evs)
	if !stop() || errors.Is(context.Cause(ctx), errFenced) {
		return errFenced
	}
	return err
}

// Health forwards the health of the sink behind the fence (a
// sinks.Deferred not open yet), which /readyz and kubefeed_sink_ready
// report; a sink that does not report health is healthy.
func (f *fencedSink) Health() (bool, string) {
	if h, ok := f.Sink.(interface{ Health() (bool, string) }); ok {
		return h.Health()
	}
	return true, ""
}

var _ sinks.AsyncSink = (*fencedSink)(nil)

// Publish forwards to the sink's window (or its Send), fenced like Send:
// nothing is handed over once abort ended, and an ack that arrives after
// it counts as not delivered, so the next leader sends it again (same id).
func (f *fencedSink) Publish(ctx context.Context, evs []*event.Event, done func(error)) error {
	as, ok := f.Sink.(sinks.AsyncSink)
	if !ok {
		done(f.Send(ctx, evs))
		return nil
	}
	if f.abort.Err() != nil {
		return errFenced
	}
	return as.Publish(ctx, evs, func(err error) {
		if f.abort.Err() != nil {
			err = errFenced
		}
		done(err)
	})
}
