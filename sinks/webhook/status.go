package webhook

import (
	"fmt"
	"net/http"
	"time"

	"github.com/kubefeed/kubefeed/sinks"
)

// statusError is a response outside 2xx.
type statusError struct {
	Code int
	// Target is the URL as logs may show it (sinks.SafeURL).
	Target string
	// Location of a 3xx, shown the same way; empty otherwise.
	Location string
	// Body is the start of the response body, with secrets scrubbed.
	Body string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("POST %s: %d %s", e.Target, e.Code, http.StatusText(e.Code))
	if e.Code >= 300 && e.Code < 400 {
		loc := e.Location
		if loc == "" {
			loc = "no Location"
		}
		msg += fmt.Sprintf(": redirect to %s not followed", loc)
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// HTTPStatus is the response status (dead-letter records carry it).
func (e *statusError) HTTPStatus() int { return e.Code }

// statusPolicy decides what a response status means.
type statusPolicy struct {
	retry, permanent map[int]bool
}

func newStatusPolicy(c Config) statusPolicy {
	p := statusPolicy{retry: map[int]bool{}, permanent: map[int]bool{}}
	for _, s := range c.RetryOn {
		p.retry[s] = true
	}
	for _, s := range c.PermanentOn {
		p.permanent[s] = true
	}
	return p
}

// retryable: 3xx that was not followed, 401/403/404/409 (credentials being
// rotated, a receiver being redeployed), 408, 429 and 5xx, unless the
// config says otherwise.
func (p statusPolicy) retryable(code int) bool {
	switch {
	case p.retry[code]:
		return true
	case p.permanent[code]:
		return false
	case code >= 300 && code < 400, code >= 500:
		return true
	}
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
		http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// classify turns a non-2xx response into the sink error: permanent,
// retryable after the receiver's positive Retry-After, or plainly
// retryable (the queue's backoff).
func (p statusPolicy) classify(err *statusError, retryAfterHeader string) error {
	if !p.retryable(err.Code) {
		return sinks.Permanent(err)
	}
	if d, ok := sinks.ParseRetryAfter(retryAfterHeader, time.Now()); ok && d > 0 {
		return sinks.RetryAfter(err, d)
	}
	// No Retry-After, 0, or a date in the past: a plain retryable error, so
	// the queue's exponential backoff applies (RetryAfter(0) would retry at
	// once, in a loop).
	return err
}
