package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// batchReceiver records each request's event ids and answers status.
type batchReceiver struct {
	mu       sync.Mutex
	requests [][]string
	status   int
}

func (r *batchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var evs []struct{ ID string }
	if err := json.Unmarshal(body, &evs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status != 0 {
		http.Error(w, "nope", r.status)
		return
	}
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	r.requests = append(r.requests, ids)
}

// publishAll publishes one event of each object and returns every
// object's outcome once all dones were called.
func publishAll(t *testing.T, s sinks.AsyncSink, objects int) []error {
	t.Helper()
	errs := make([]error, objects)
	var wg sync.WaitGroup
	for o := 0; o < objects; o++ {
		wg.Add(1)
		if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(o, 1)}, func(err error) { errs[o] = err; wg.Done() }); err != nil {
			t.Fatalf("publish %d: %v", o, err)
		}
	}
	wg.Wait()
	return errs
}

// Events of different objects share requests: 95 objects with batch 10
// go in 10 requests of at most 10 events, none lost.
func TestBatchAcrossObjects(t *testing.T) {
	rec := &batchReceiver{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	// A linger far above the test's run: only full batches and Close send.
	s := newSink(t, config.WebhookSink{URL: srv.URL, Batch: 10, Linger: config.Duration{Duration: time.Hour}, MaxInFlight: 20})
	done := make(chan []error, 1)
	go func() { done <- publishAll(t, s, 95) }()
	// The last 5 objects wait for the linger; Close sends them.
	waitRequests := func(n int) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			rec.mu.Lock()
			got := len(rec.requests)
			rec.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d requests, want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitRequests(9)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for o, err := range <-done {
		if err != nil {
			t.Errorf("object %d: %v", o, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range rec.requests {
		if len(r) > 10 {
			t.Errorf("request with %d events, batch is 10", len(r))
		}
		for _, id := range r {
			seen[id] = true
		}
	}
	if len(rec.requests) != 10 {
		t.Errorf("%d requests, want 10", len(rec.requests))
	}
	if len(seen) != 95 {
		t.Errorf("%d distinct events received, want 95", len(seen))
	}
}

// A failed batch fails each of its objects, retryably; a linger sends a
// batch that is not full.
func TestBatchFailureFailsEveryObject(t *testing.T) {
	rec := &batchReceiver{status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := newSink(t, config.WebhookSink{URL: srv.URL, Batch: 100, Linger: config.Duration{Duration: 20 * time.Millisecond}})
	defer s.Close(context.Background())
	for o, err := range publishAll(t, s, 7) {
		if err == nil || sinks.IsPermanent(err) {
			t.Errorf("object %d: %v, want a retryable failure", o, err)
		}
	}
	rec.mu.Lock()
	rec.status = 0
	rec.mu.Unlock()
	for o, err := range publishAll(t, s, 7) {
		if err != nil {
			t.Errorf("object %d after healing: %v", o, err)
		}
	}
}
