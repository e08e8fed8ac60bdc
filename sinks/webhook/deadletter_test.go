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
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

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
