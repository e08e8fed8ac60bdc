package webhook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// seen is one request a test server got.
type seen struct {
	server, method, path, body string
	header                     http.Header
}

// redirector is the configured receiver: /events answers a redirect to
// its own /elsewhere or to another server until redirect is 0; every
// request to every server is recorded.
type redirector struct {
	mu       sync.Mutex
	requests []seen
	redirect int
	location string
}

func (r *redirector) record(server string, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, seen{server, req.Method, req.URL.Path, string(body), req.Header.Clone()})
	r.mu.Unlock()
}

func (r *redirector) set(code int, location string) {
	r.mu.Lock()
	r.redirect, r.location = code, location
	r.mu.Unlock()
}

func (r *redirector) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.requests...)
}

func TestRedirects(t *testing.T) {
	rd := &redirector{}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { rd.record("other", req) }))
	defer other.Close()
	main := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rd.record("main", req)
		rd.mu.Lock()
		code, loc := rd.redirect, rd.location
		rd.mu.Unlock()
		if req.URL.Path == "/events" && code != 0 {
			w.Header().Set("Location", loc)
			w.WriteHeader(code)
		}
	}))
	defer main.Close()

	const token, apiKey = "tok-s3cret-123", "key-s3cret-456"
	dir := t.TempDir()
	tokFile := dir + "/token"
	writeFile(t, tokFile, token)
	n := 0
	for _, policy := range []string{config.FollowRedirectsNever, config.FollowRedirectsSameHost} {
		for _, code := range []int{301, 302, 303, 307, 308} {
			for _, target := range []string{"same", "other"} {
				t.Run(fmt.Sprintf("%s/%d/%s", policy, code, target), func(t *testing.T) {
					core, logs := observer.New(zap.DebugLevel)
					s, err := webhook.New(webhook.Options{Logger: zap.New(core), Config: config.WebhookSink{
						URL: main.URL + "/events?sig=q-s3cret", FollowRedirects: policy, Timeout: config.Duration{Duration: 5e9},
						Headers: map[string]string{"X-Api-Key": apiKey}, BearerTokenFile: tokFile,
					}})
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close(context.Background())
					loc := main.URL + "/elsewhere?sig=loc-s3cret"
					if target == "other" {
						loc = other.URL + "/elsewhere?sig=loc-s3cret"
					}
					rd.set(code, loc)
					n++
					ev := sinktest.Event(n, 1)
					err = s.Send(context.Background(), []*event.Event{ev})
					follow := policy == config.FollowRedirectsSameHost && target == "same" && (code == 307 || code == 308)
					switch {
					case follow && err != nil:
						t.Fatalf("same-host %d with sameHost: %v, want delivered to /elsewhere", code, err)
					case !follow && (err == nil || sinks.IsPermanent(err)):
						t.Fatalf("redirect not followed: %v, want a retryable error", err)
					case !follow:
						if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(code)) || !strings.Contains(msg, "not followed") || strings.Contains(msg, "s3cret") {
							t.Errorf("error %q: want the status, 'not followed' and no secret", msg)
						}
						entries := logs.FilterMessageSnippet("redirect").All()
						if len(entries) != 1 {
							t.Fatalf("%d redirect log lines, want 1", len(entries))
						}
						f := entries[0].ContextMap()
						if f["status"] != int64(code) || !strings.HasSuffix(fmt.Sprint(f["location"]), "/…") || strings.Contains(fmt.Sprint(f), "s3cret") {
							t.Errorf("log fields %v: want status, safe location, no secret", f)
						}
					}
					// The receiver heals: the event reaches the configured URL.
					rd.set(0, "")
					if !follow {
						if err := s.Send(context.Background(), []*event.Event{ev}); err != nil {
							t.Fatalf("after healing: %v", err)
						}
					}
					var delivered bool
					for _, r := range rd.all() {
						if strings.Contains(r.body, ev.ID) && r.method == http.MethodPost && r.server == "main" {
							delivered = true
						}
					}
					if !delivered {
						t.Errorf("event %s never arrived as a POST", ev.ID)
					}
				})
			}
		}
	}
	for _, r := range rd.all() {
		if r.server == "other" {
			t.Errorf("the other host got a request: %s %s headers %v", r.method, r.path, r.header)
		}
		if r.method != http.MethodPost || r.body == "" {
			t.Errorf("%s got %s %s with %d bytes of body", r.server, r.method, r.path, len(r.body))
		}
		if r.header.Get("Authorization") != "Bearer "+token || r.header.Get("X-Api-Key") != apiKey {
			t.Errorf("%s %s lacks the configured headers: %v", r.server, r.path, r.header)
		}
	}
}
