package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
)

// errNotOpen is wrapped into the retryable error of a send to a Deferred
// sink that could not be opened yet.
var errNotOpen = errors.New("sink not open yet")

// Deferred stands for a sink whose construction failed at start (a broker
// down, a stream missing, a directory not writable). It opens the sink
// again in the background with backoff; until that succeeds every Send
// fails retryably, so only this sink's queue waits while the other sinks
// deliver. Health reports why it is not open.
type Deferred struct {
	name   string
	open   func(ctx context.Context) (Sink, error)
	log    *zap.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	sink    Sink
	lastErr error
}

var _ Sink = (*Deferred)(nil)

// DeferredOptions configure the retry of a Deferred sink; zero values
// mean 1s and 1m.
type DeferredOptions struct {
	MinBackoff, MaxBackoff time.Duration
	Logger                 *zap.Logger
}

// NewDeferred starts opening the sink named name in the background; first
// is the error of the attempt that already failed.
func NewDeferred(name string, first error, open func(ctx context.Context) (Sink, error), o DeferredOptions) *Deferred {
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Deferred{name: name, open: open, log: o.Logger, cancel: cancel, done: make(chan struct{}), lastErr: first}
	go d.loop(ctx, o.MinBackoff, o.MaxBackoff)
	return d
}

func (d *Deferred) loop(ctx context.Context, wait, maxWait time.Duration) {
	defer close(d.done)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := d.open(octx)
		cancel()
		d.mu.Lock()
		if err == nil {
			d.sink, d.lastErr = s, nil
			d.mu.Unlock()
			d.log.Info("sink opened after an earlier failure", zap.String("sink", d.name))
			return
		}
		d.lastErr = err
		d.mu.Unlock()
		d.log.Warn("sink still cannot be opened; retrying", zap.String("sink", d.name), zap.Duration("in", min(wait*2, maxWait)), zap.Error(err))
		wait = min(wait*2, maxWait)
	}
}

// Send sends through the opened sink, or fails retryably.
func (d *Deferred) Send(ctx context.Context, events []*event.Event) error {
	d.mu.Lock()
	s, err := d.sink, d.lastErr
	d.mu.Unlock()
	if s == nil {
		return RetryAfter(fmt.Errorf("%w: %s: %w", errNotOpen, d.name, err), 5*time.Second)
	}
	return s.Send(ctx, events)
}

var _ AsyncSink = (*Deferred)(nil)

// Publish forwards to the opened sink's window (or its Send), or fails
// retryably with nothing handed over.
func (d *Deferred) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	d.mu.Lock()
	s, err := d.sink, d.lastErr
	d.mu.Unlock()
	if s == nil {
		return RetryAfter(fmt.Errorf("%w: %s: %w", errNotOpen, d.name, err), 5*time.Second)
	}
	if as, ok := s.(AsyncSink); ok {
		return as.Publish(ctx, events, done)
	}
	done(s.Send(ctx, events))
	return nil
}

// Health reports whether the sink is open and, if not, why.
func (d *Deferred) Health() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sink != nil {
		return true, ""
	}
	return false, fmt.Sprintf("sink %s not open: %v", d.name, d.lastErr)
}

// Close stops retrying and closes the sink if it was opened.
func (d *Deferred) Close(ctx context.Context) error {
	d.cancel()
	<-d.done
	d.mu.Lock()
	s := d.sink
	d.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Close(ctx)
}
