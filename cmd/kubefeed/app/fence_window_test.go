package app

import (
	"context"
	"errors"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// windowSink is an AsyncSink that holds the done callbacks it was given.
type windowSink struct {
	published, sent int
	dones           []func(error)
}

func (w *windowSink) Send(context.Context, []*event.Event) error { w.sent++; return nil }
func (w *windowSink) Close(context.Context) error                { return nil }
func (w *windowSink) Publish(_ context.Context, _ []*event.Event, done func(error)) error {
	w.published++
	w.dones = append(w.dones, done)
	return nil
}

// The fence keeps the sink's window (kubefeed run wraps every sink in it),
// and an ack that arrives after the Lease was lost counts as undelivered.
func TestFenceKeepsTheWindow(t *testing.T) {
	inner := &windowSink{}
	abort, lose := context.WithCancel(context.Background())
	f := fence(map[string]sinks.Sink{"s": inner}, abort)["s"]
	as, ok := f.(sinks.AsyncSink)
	if !ok {
		t.Fatal("the fenced sink hides the window")
	}
	var got []error
	for i := 0; i < 2; i++ {
		if err := as.Publish(context.Background(), []*event.Event{{ID: "x"}}, func(err error) { got = append(got, err) }); err != nil {
			t.Fatal(err)
		}
	}
	if inner.published != 2 || inner.sent != 0 {
		t.Fatalf("published %d, sent %d: want both through the window", inner.published, inner.sent)
	}
	inner.dones[0](nil)
	lose()
	inner.dones[1](nil)
	if got[0] != nil || !errors.Is(got[1], errFenced) {
		t.Fatalf("acks = %v, want nil then errFenced", got)
	}
	if err := as.Publish(context.Background(), nil, func(error) { t.Error("done called after a refused publish") }); !errors.Is(err, errFenced) {
		t.Fatalf("publish after the Lease was lost: %v", err)
	}
}
