package exporter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// a4Sink is an AsyncSink whose publishes the test answers by hand.
type a4Sink struct {
	pubs chan a4Pub
}

type a4Pub struct {
	evs  []*event.Event
	done func(error)
}

func (m *a4Sink) Publish(_ context.Context, evs []*event.Event, done func(error)) error {
	m.pubs <- a4Pub{evs: evs, done: done}
	return nil
}

func (m *a4Sink) Send(ctx context.Context, evs []*event.Event) error {
	res := make(chan error, 1)
	if err := m.Publish(ctx, evs, func(err error) { res <- err }); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *a4Sink) Close(context.Context) error { return nil }

var _ sinks.AsyncSink = (*a4Sink)(nil)

func (m *a4Sink) next(t *testing.T) a4Pub {
	t.Helper()
	select {
	case p := <-m.pubs:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published")
		return a4Pub{}
	}
}

// TestAudit4PublishedThenDeletedStillGetsItsDeletion checks the property
// the window-test relaxation must not hide: an object whose add was
// handed to the sink, and deleted while the add was in flight, gets its
// deletion whether the add is then acknowledged or fails.
func TestAudit4PublishedThenDeletedStillGetsItsDeletion(t *testing.T) {
	for _, tc := range []struct {
		name string
		ack  error
	}{{"acked", nil}, {"failed", errors.New("nack")}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &a4Sink{pubs: make(chan a4Pub, 16)}
			cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
			h := startHarness(t, cfg, harnessOpts{sink: sink})
			h.waitReady()
			h.src.apply(cmRes.GVR, cm("a", "x", nil), false)
			p := sink.next(t)
			if len(p.evs) != 1 || p.evs[0].Type != event.Added.Type() {
				t.Fatalf("first publish %s, want one added", summary(p.evs))
			}
			h.src.remove(cmRes.GVR, "a", "x", false)
			time.Sleep(100 * time.Millisecond) // the informer has the deletion
			p.done(tc.ack)
			for {
				p = sink.next(t)
				var del bool
				for _, e := range p.evs {
					del = del || e.Type == event.Deleted.Type()
				}
				if del {
					p.done(nil)
					return
				}
				p.done(nil) // e.g. the add again after the nack
			}
		})
	}
}
