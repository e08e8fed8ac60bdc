package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Content types.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// Options of the sink. Config is required; Logger may be nil.
type Options struct {
	Config Config
	Logger *zap.Logger
}

// sink POSTs events to one URL.
type sink struct {
	cfg     Config
	client  *http.Client
	headers http.Header
	target  string   // sinks.SafeURL of the URL, for logs and errors
	secrets []string // header values and token, scrubbed from receiver echoes
	policy  statusPolicy
	log     *zap.Logger
	closed  atomic.Bool
	batcher *batcher
}

var _ sinks.AsyncSink = (*sink)(nil)

// New reads the secret files and builds the HTTP client.
func New(o Options) (*sink, error) {
	c := o.Config
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("webhook url %s: not an absolute URL", sinks.SafeURL(c.URL))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	if c.TLS != nil {
		tc, err := sinks.TLSConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	s := &sink{cfg: c, headers: http.Header{}, target: sinks.SafeURL(c.URL), policy: newStatusPolicy(c), log: log}
	for k, v := range c.Headers {
		s.setHeader(k, v)
	}
	for k, f := range c.HeaderFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("webhook headerFiles[%s]: %w", k, err)
		}
		s.setHeader(k, strings.TrimSpace(string(b)))
	}
	if c.BearerTokenFile != "" {
		b, err := os.ReadFile(c.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("webhook bearerTokenFile: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		s.setHeader("Authorization", "Bearer "+tok)
		s.addSecret(tok)
	}
	if p, ok := u.User.Password(); ok {
		s.addSecret(p)
	}
	s.client = &http.Client{Timeout: c.Timeout.Duration, Transport: tr, CheckRedirect: checkRedirect(c.FollowRedirects, u)}
	s.batcher = newBatcher(s)
	return s, nil
}

func (s *sink) setHeader(k, v string) {
	s.headers.Set(k, v)
	s.addSecret(v)
}

func (s *sink) addSecret(v string) {
	if len(v) >= 4 { // shorter values would scrub ordinary words
		s.secrets = append(s.secrets, v)
	}
}

// scrub removes the sink's header values and token from text the receiver
// controls (a response body may echo the request).
func (s *sink) scrub(text string) string {
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, "<redacted>")
	}
	return text
}

// Send posts the events and waits for the answer: one request each, or
// batches of up to batch events. Publish (batch.go) is the windowed path.
func (s *sink) Send(ctx context.Context, events []*event.Event) error {
	if s.closed.Load() {
		return fmt.Errorf("webhook sink: closed")
	}
	if s.cfg.Batch > 1 {
		for start := 0; start < len(events); start += s.cfg.Batch {
			if err := s.postBatch(ctx, events[start:min(start+s.cfg.Batch, len(events))]); err != nil {
				return err
			}
		}
		return nil
	}
	return s.postEach(ctx, events)
}

// postEach posts one request per event, in order.
func (s *sink) postEach(ctx context.Context, events []*event.Event) error {
	for _, e := range events {
		enc, err := sinks.EncodeAs(nil, e, s.cfg.format(), 0)
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

func (s *sink) postBatch(ctx context.Context, events []*event.Event) error {
	// Each event as structured mode writes it (extensions and types
	// included), in a JSON array.
	body := []byte{'['}
	types := s.cfg.format().EventTypes()
	for i, e := range events {
		if i > 0 {
			body = append(body, ',')
		}
		var err error
		if body, err = event.AppendMarshalAs(body, e, types); err != nil {
			return sinks.Permanent(fmt.Errorf("encode batch: event %s: %w", e.ID, err))
		}
	}
	body = append(body, ']')
	hdr := s.headers.Clone()
	hdr.Set("Content-Type", ContentTypeBatch)
	return s.post(ctx, body, hdr)
}

func (s *sink) post(ctx context.Context, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return sinks.Permanent(fmt.Errorf("POST %s: request: %w", s.target, err))
	}
	req.Header = hdr
	resp, err := s.client.Do(req)
	if err != nil {
		// A *url.Error names the full URL: show the safe one instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", s.target, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &statusError{Code: resp.StatusCode, Target: s.target, Body: s.scrub(strings.ToValidUTF8(string(bytes.TrimSpace(snippet)), "?"))}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if loc, err := resp.Location(); err == nil {
			se.Location = sinks.SafeURL(loc.String())
		}
		s.log.Warn("webhook answered with a redirect that is not followed; retrying later",
			zap.String("url", s.target), zap.Int("status", se.Code), zap.String("location", se.Location),
			zap.String("followRedirects", s.cfg.FollowRedirects))
	}
	return s.policy.classify(se, resp.Header.Get("Retry-After"))
}

// Close sends what was collected, waits (bounded by ctx) for the requests
// in flight and releases idle connections.
func (s *sink) Close(ctx context.Context) error {
	s.closed.Store(true)
	s.batcher.close(ctx)
	s.client.CloseIdleConnections()
	return nil
}
