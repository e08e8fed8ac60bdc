package sinks

import (
	"context"
	"errors"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// Sink receives events.
type Sink interface {
	Send(ctx context.Context, events []*event.Event) error
	Close(ctx context.Context) error
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (the event can never be
// delivered as it is): the exporter drops it (or a dead-letter file keeps
// it) and moves on. A closed sink refused nothing: its errors after Close,
// and those of sends Close gave up on, are retryable, so what the
// exporter still held is the next start's to send.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// ErrDeadLettered is wrapped into the permanent error of a send whose
// rejected events were kept in the sink's dead-letter file: they are not
// delivered, but not lost either.
var ErrDeadLettered = errors.New("dead-lettered")

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as retryable no sooner than after d.
func RetryAfter(err error, d time.Duration) error {
	return &retryAfterError{err: err, after: d}
}

// RetryAfterOf returns the wait asked for by RetryAfter, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
