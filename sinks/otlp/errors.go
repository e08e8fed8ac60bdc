package otlp

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kubefeed/kubefeed/sinks"
)

// How export failures are classified, as the OTLP specification says
// (protocol/exporter and the OTLP/gRPC and OTLP/HTTP throttling and
// failure sections):
//   - gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
//     UNAVAILABLE and DATA_LOSS are retryable; RESOURCE_EXHAUSTED is
//     retryable only when the server sent RetryInfo (it can recover);
//     every other code is permanent. A RetryInfo's positive retry_delay
//     is honoured.
//   - HTTP: 429, 502, 503 and 504 are retryable, with a positive
//     Retry-After honoured; a redirect is not followed and is retried
//     later, so that a misconfigured endpoint holds the sink back rather
//     than dropping events; every other status is permanent.
//   - No answer at all (connection refused, reset, timeout) is
//     retryable.
//   - Unlike the specification, a refused credential (gRPC
//     UNAUTHENTICATED and PERMISSION_DENIED, HTTP 401 and 403) is
//     retryable, as on the webhook sink: a token rotated under a running
//     kubefeed (headerFiles are read again when they change) must hold
//     the sink back until the new one is read, not drop every event
//     meanwhile.
//   - An accepted request with a partial success that rejected records
//     fails those records' objects (batch.go).

// exportError is an export the receiver refused.
type exportError struct {
	// Target is the endpoint as logs may show it.
	Target string
	// Status is the gRPC code or the HTTP status.
	Status string
	// Msg is the receiver's message, with secrets scrubbed.
	Msg string
}

func (e *exportError) Error() string {
	msg := fmt.Sprintf("otlp export to %s: %s", e.Target, e.Status)
	if e.Msg != "" {
		msg += ": " + e.Msg
	}
	return msg
}

// rejectedError is an export accepted with a partial success that
// rejected records.
type rejectedError struct {
	Target             string
	Rejected, Requests int64
	Msg                string
}

func (e *rejectedError) Error() string {
	msg := fmt.Sprintf("otlp export to %s: the receiver rejected %d of %d log records", e.Target, e.Rejected, e.Requests)
	if e.Msg != "" {
		msg += ": " + e.Msg
	}
	return msg
}

// classifyGRPC turns the error of a gRPC export into the sink's error.
func classifyGRPC(err error, target string, scrub func(string) string) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("otlp export to %s: %w", target, err)
	}
	e := &exportError{Target: target, Status: st.Code().String(), Msg: scrub(st.Message())}
	delay, hasInfo := retryInfo(st)
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss,
		codes.Unauthenticated, codes.PermissionDenied:
	case codes.ResourceExhausted:
		if !hasInfo {
			return sinks.Permanent(e)
		}
	default:
		return sinks.Permanent(e)
	}
	if delay > 0 {
		return sinks.RetryAfter(e, min(delay, sinks.MaxRetryAfter))
	}
	return e
}

// retryInfo returns the RetryInfo detail of a status, if it has one.
func retryInfo(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			if ri.GetRetryDelay() == nil {
				return 0, true
			}
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// retryableHTTP reports whether an HTTP status is worth retrying.
func retryableHTTP(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return code >= 300 && code < 400
}

// classifyHTTP turns a non-2xx response into the sink's error.
func classifyHTTP(e *exportError, code int, retryAfterHeader string, now time.Time) error {
	if !retryableHTTP(code) {
		return sinks.Permanent(e)
	}
	if d, ok := sinks.ParseRetryAfter(retryAfterHeader, now); ok && d > 0 {
		return sinks.RetryAfter(e, d)
	}
	// No Retry-After, 0 or a past date: the queue's backoff, never an
	// immediate retry in a loop.
	return e
}

// isRejected reports whether err is a partial success's rejection.
func isRejected(err error) bool {
	var r *rejectedError
	return errors.As(err, &r)
}
