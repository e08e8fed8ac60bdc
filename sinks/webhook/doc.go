// Package webhook is the HTTP sink: it POSTs CloudEvents (structured by
// default, binary as an option, or batches of
// application/cloudevents-batch+json) with its own http.Client and
// timeouts.
//
// Classification (status.go): connection errors, timeouts, 5xx, 408, 429
// and 401, 403, 404, 409 (token rotation, a receiver being redeployed) are
// retryable; other 4xx are permanent; retryOn and permanentOn override.
// A positive Retry-After is honoured; 0 or a past date falls back to the
// queue's backoff, never an immediate retry.
//
// Redirects (redirect.go): not followed by default. followRedirects:
// sameHost follows 307 and 308 to the same scheme, host and port only,
// keeping method and body. A 3xx that is not followed is a retryable
// failure, logged with its status and Location. Configured headers and the
// bearer token therefore never reach another host.
//
// Response bodies are always drained and closed. URLs are shown through
// sinks.SafeURL (no user info, path or query), and the token and header
// values are scrubbed from anything the receiver echoes into errors.
package webhook
