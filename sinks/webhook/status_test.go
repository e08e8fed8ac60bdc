package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// TestTokenRotation: a 401 while the receiver rotates its token is retried,
// and the event arrives once the receiver accepts it.
func TestTokenRotation(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := newSink(t, config.WebhookSink{URL: srv.URL})
	ev := sinktest.Event(1, 1)
	rec.setStatus(http.StatusUnauthorized, "")
	err := s.Send(context.Background(), []*event.Event{ev})
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("401: %v, want retryable", err)
	}
	rec.setStatus(0, "")
	if err := s.Send(context.Background(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if got := rec.received(t); len(got) != 1 || got[0] != ev.ID {
		t.Errorf("received %v, want %s", got, ev.ID)
	}
}

func TestStatusOverrides(t *testing.T) {
	rec := &receiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := newSink(t, config.WebhookSink{URL: srv.URL, RetryOn: []int{400, 422}, PermanentOn: []int{401, 503, 302}})
	for _, tc := range []struct {
		status    int
		permanent bool
	}{
		{400, false}, {422, false}, // permanent by default, retried by retryOn
		{401, true}, {503, true}, {302, true}, // retried by default, permanent by permanentOn
		{404, false}, {500, false}, {418, true}, // defaults stay
	} {
		rec.setStatus(tc.status, "")
		err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
		if err == nil || sinks.IsPermanent(err) != tc.permanent {
			t.Errorf("status %d: %v, permanent %v, want %v", tc.status, err, sinks.IsPermanent(err), tc.permanent)
		}
	}
}

// TestRetryAfterZeroOrPastBacksOff: Retry-After 0 or a past date must not
// ask for an immediate retry (a hot loop); the queue's backoff applies. The
// sink itself sends exactly one request per Send.
func TestRetryAfterZeroOrPastBacksOff(t *testing.T) {
	var requests atomic.Int64
	var retry atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Retry-After", retry.Load().(string))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	s := newSink(t, config.WebhookSink{URL: srv.URL})
	for _, v := range []string{"0", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), "-5", "soon", ""} {
		retry.Store(v)
		before := requests.Load()
		err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("Retry-After %q: %v, want retryable", v, err)
		}
		if d, ok := sinks.RetryAfterOf(err); ok {
			t.Errorf("Retry-After %q: asks to retry after %v; want the queue's backoff", v, d)
		}
		if n := requests.Load() - before; n != 1 {
			t.Errorf("Retry-After %q: %d requests for one Send, want 1", v, n)
		}
	}
	retry.Store(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if d, ok := sinks.RetryAfterOf(err); !ok || d < 4*time.Minute || d > 5*time.Minute {
		t.Errorf("Retry-After in an hour: %v (%v), want capped at 5m", d, ok)
	}
}

// TestErrorsShowNoSecrets: URL path, query and user info, the token and
// header values echoed by the receiver never appear in errors.
func TestErrorsShowNoSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad request from "+r.Header.Get("Authorization")+" "+r.Header.Get("X-Api-Key"), http.StatusBadRequest)
	}))
	defer srv.Close()
	dir := t.TempDir()
	writeFile(t, dir+"/tok", "tok-s3cret")
	u := strings.Replace(srv.URL, "http://", "http://user:pw-s3cret@", 1) + "/hooks/path-s3cret?key=q-s3cret"
	s := newSink(t, config.WebhookSink{URL: u, BearerTokenFile: dir + "/tok", Headers: map[string]string{"X-Api-Key": "hdr-s3cret"}})
	err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if err == nil || !sinks.IsPermanent(err) {
		t.Fatalf("400: %v, want permanent", err)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, srv.URL+"/…") || !strings.Contains(msg, "400") {
		t.Errorf("error %q: want the safe URL, the status and no secret", msg)
	}
	srv.Close()
	err = s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if err == nil || sinks.IsPermanent(err) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("connection refused: %v, want retryable without secrets", err)
	}
}

// TestBadRequestIsDeadLettered: a 400 is permanent, and the event lands in
// the dead-letter file with its status, without the sink's credentials.
func TestBadRequestIsDeadLettered(t *testing.T) {
	bad := sinktest.Event(2, 1)
	rec := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), bad.ID) {
			http.Error(w, "no such kind; you sent "+r.Header.Get("Authorization"), http.StatusBadRequest)
			return
		}
		r.Body = nopBody{strings.NewReader(string(b))}
		rec.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tok"), "tok-s3cret")
	for _, batch := range []int{0, 10} {
		path := filepath.Join(dir, "dl", "dead.jsonl")
		os.Remove(path)
		wh := newSink(t, config.WebhookSink{URL: srv.URL + "/hook?key=q-s3cret", BearerTokenFile: filepath.Join(dir, "tok"), Headers: map[string]string{"X-Api-Key": "hdr-s3cret"}, Batch: batch})
		s, err := deadletter.Wrap(wh, deadletter.Options{Name: "hook", Path: path})
		if err != nil {
			t.Fatal(err)
		}
		good1, good2 := sinktest.Event(1, batch+1), sinktest.Event(3, batch+1)
		err = s.Send(context.Background(), []*event.Event{good1, bad, good2})
		if !sinks.IsPermanent(err) || !errors.Is(err, sinks.ErrDeadLettered) {
			t.Fatalf("batch %d: %v, want permanent and dead-lettered", batch, err)
		}
		got := rec.received(t)
		if !contains(got, good1.ID) || !contains(got, good2.ID) || contains(got, bad.ID) {
			t.Errorf("batch %d: received %v, want both good events", batch, got)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "s3cret") {
			t.Errorf("batch %d: the dead-letter file holds a credential:\n%s", batch, raw)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		var r deadletter.Record
		if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &r) != nil || r.ID != bad.ID || r.Status != 400 || !strings.Contains(r.Reason, "400") {
			t.Errorf("batch %d: dead letters %q, want one record of %s with status 400", batch, lines, bad.ID)
		}
		s.Close(context.Background())
	}
}

type nopBody struct{ *strings.Reader }

func (nopBody) Close() error { return nil }

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
