// Package webhook is the HTTP sink: it POSTs CloudEvents (structured by
// default, binary as an option, or batches of
// application/cloudevents-batch+json) with its own http.Client and
// timeouts.
//
// Classification: connection errors, timeouts, 5xx, 408 and 429 are
// retryable (429 and 503 honour Retry-After); other 4xx are permanent.
// Response bodies are always drained and closed. The bearer token and
// header values read from files are never logged, and URLs are logged
// without user info.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// Content types.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// Options of the sink.
type Options struct {
	Config config.WebhookSink
}

// Sink POSTs events to one URL.
type Sink struct {
	cfg     config.WebhookSink
	client  *http.Client
	headers http.Header
	target  string // URL without user info, for errors
	closed  atomic.Bool
}

var _ sinks.Sink = (*Sink)(nil)

// New reads the secret files and builds the HTTP client.
func New(o Options) (*Sink, error) {
	c := o.Config
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	target := *u
	target.User = nil
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	if c.TLS != nil {
		tc, err := natsconn.TLSConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	for k, f := range c.HeaderFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("webhook headerFiles[%s]: %w", k, err)
		}
		h.Set(k, strings.TrimSpace(string(b)))
	}
	if c.BearerTokenFile != "" {
		b, err := os.ReadFile(c.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("webhook bearerTokenFile: %w", err)
		}
		h.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	return &Sink{
		cfg:     c,
		client:  &http.Client{Timeout: c.Timeout.Duration, Transport: tr},
		headers: h,
		target:  target.String(),
	}, nil
}

// Send posts the events: one request each, or one batch per Send.
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	if s.closed.Load() {
		return sinks.Permanent(fmt.Errorf("webhook sink: closed"))
	}
	if s.cfg.Batch > 1 {
		for start := 0; start < len(events); start += s.cfg.Batch {
			if err := s.postBatch(ctx, events[start:min(start+s.cfg.Batch, len(events))]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range events {
		enc, err := sinks.Encode(e, s.cfg.Mode, 0)
		if err != nil {
			return sinks.Permanent(err)
		}
		hdr := s.headers.Clone()
		if enc.Headers == nil {
			hdr.Set("Content-Type", ContentTypeStructured)
		}
		for _, kv := range enc.Headers {
			hdr.Set(kv[0], kv[1])
		}
		if err := s.post(ctx, enc.Body, hdr); err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
	}
	return nil
}

func (s *Sink) postBatch(ctx context.Context, events []*event.Event) error {
	body, err := json.Marshal(events)
	if err != nil {
		return sinks.Permanent(fmt.Errorf("encode batch: %w", err))
	}
	hdr := s.headers.Clone()
	hdr.Set("Content-Type", ContentTypeBatch)
	return s.post(ctx, body, hdr)
}

func (s *Sink) post(ctx context.Context, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return sinks.Permanent(fmt.Errorf("request: %w", err))
	}
	req.Header = hdr
	resp, err := s.client.Do(req)
	if err != nil {
		// The error text may contain the full URL; report it without user info.
		return fmt.Errorf("POST %s: %s", s.target, redactErr(err, s.cfg.URL, s.target))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: %s: %s", s.target, resp.Status, bytes.TrimSpace(snippet))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return sinks.RetryAfter(err, d)
		}
		return err
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		return err
	default:
		return sinks.Permanent(err)
	}
}

// retryAfter parses seconds or an HTTP date, capped at 5 minutes.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	} else {
		return 0, false
	}
	return min(max(d, 0), 5*time.Minute), true
}

func redactErr(err error, full, safe string) string {
	return strings.ReplaceAll(err.Error(), full, safe)
}

// Close releases idle connections.
func (s *Sink) Close(context.Context) error {
	s.closed.Store(true)
	s.client.CloseIdleConnections()
	return nil
}
