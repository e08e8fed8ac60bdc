package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// receiver is an HTTP endpoint that records CloudEvents and can fail.
type receiver struct {
	mu      sync.Mutex
	ids     []string
	headers []http.Header
	status  int // when not 0, answer this instead
	retry   string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status != 0 {
		if r.retry != "" {
			w.Header().Set("Retry-After", r.retry)
		}
		http.Error(w, "nope", r.status)
		return
	}
	r.headers = append(r.headers, req.Header.Clone())
	switch req.Header.Get("Content-Type") {
	case webhook.ContentTypeBatch:
		var evs []struct{ ID string }
		_ = json.Unmarshal(body, &evs)
		for _, e := range evs {
			r.ids = append(r.ids, e.ID)
		}
	case webhook.ContentTypeStructured:
		var e struct{ ID string }
		_ = json.Unmarshal(body, &e)
		r.ids = append(r.ids, e.ID)
	default:
		r.ids = append(r.ids, req.Header.Get("ce-id"))
	}
}

func (r *receiver) received(*testing.T) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func (r *receiver) setStatus(code int, retry string) {
	r.mu.Lock()
	r.status, r.retry = code, retry
	r.mu.Unlock()
}

func newSink(t *testing.T, c config.WebhookSink) sinks.AsyncSink {
	t.Helper()
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = 5 * time.Second
	}
	s, err := webhook.New(webhook.Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(url string) config.WebhookSink
	}{
		{"structured", func(u string) config.WebhookSink { return config.WebhookSink{URL: u} }},
		{"binary", func(u string) config.WebhookSink { return config.WebhookSink{URL: u, Mode: config.ModeBinary} }},
		{"batch", func(u string) config.WebhookSink { return config.WebhookSink{URL: u, Batch: 10} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &receiver{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			sinktest.Run(t, sinktest.Harness{
				New:      func(t *testing.T) sinks.Sink { return newSink(t, tc.cfg(srv.URL)) },
				Received: rec.received,
				Break:    func(*testing.T) { rec.setStatus(http.StatusBadGateway, "") },
				Heal:     func(*testing.T) { rec.setStatus(0, "") },
			})
		})
	}
}

func TestClassification(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := newSink(t, config.WebhookSink{URL: srv.URL})
	send := func() error { return s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}) }
	for _, tc := range []struct {
		status    int
		retry     string
		permanent bool
		after     time.Duration
	}{
		{400, "", true, 0},
		{401, "", false, 0},
		{403, "", false, 0},
		{404, "", false, 0},
		{409, "", false, 0},
		{410, "", true, 0},
		{422, "", true, 0},
		{408, "", false, 0},
		{429, "7", false, 7 * time.Second},
		{503, "2", false, 2 * time.Second},
		{500, "", false, 0},
	} {
		rec.setStatus(tc.status, tc.retry)
		err := send()
		if err == nil || sinks.IsPermanent(err) != tc.permanent {
			t.Errorf("status %d: err %v, permanent %v, want %v", tc.status, err, sinks.IsPermanent(err), tc.permanent)
		}
		if d, ok := sinks.RetryAfterOf(err); tc.after > 0 && (!ok || d != tc.after) {
			t.Errorf("status %d: retry after %v (%v), want %v", tc.status, d, ok, tc.after)
		}
	}
	// A connection error is retryable, and the URL's user info is not shown.
	srv.Close()
	s2 := newSink(t, config.WebhookSink{URL: strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)})
	err := s2.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if err == nil || sinks.IsPermanent(err) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("connection refused: %v", err)
	}
}

func TestHeadersAndTokenFromFiles(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	key := filepath.Join(dir, "key")
	_ = os.WriteFile(tok, []byte("tok-123\n"), 0o600)
	_ = os.WriteFile(key, []byte("k-456"), 0o600)
	s := newSink(t, config.WebhookSink{URL: srv.URL, Headers: map[string]string{"X-Team": "shop"}, HeaderFiles: map[string]string{"X-Api-Key": key}, BearerTokenFile: tok})
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); err != nil {
		t.Fatal(err)
	}
	h := rec.headers[0]
	if h.Get("Authorization") != "Bearer tok-123" || h.Get("X-Team") != "shop" || h.Get("X-Api-Key") != "k-456" || h.Get("Content-Type") != webhook.ContentTypeStructured {
		t.Errorf("headers: %v", h)
	}
}

func TestHangingEndpointTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	s := newSink(t, config.WebhookSink{URL: srv.URL, Timeout: config.Duration{Duration: 200 * time.Millisecond}})
	err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if err == nil || sinks.IsPermanent(err) {
		t.Errorf("hanging endpoint: %v, want a retryable timeout", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
