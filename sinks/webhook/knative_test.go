package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// ceReceiver records the CloudEvents attributes of every event it gets,
// in any content mode.
type ceReceiver struct {
	mu     sync.Mutex
	events []map[string]string
}

func (r *ceReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []map[string]any
	switch req.Header.Get("Content-Type") {
	case webhook.ContentTypeBatch:
		_ = json.Unmarshal(body, &evs)
	case webhook.ContentTypeStructured:
		var e map[string]any
		_ = json.Unmarshal(body, &e)
		evs = append(evs, e)
	default:
		// Header names come canonical (Ce-Partitionkey).
		attrs := map[string]string{}
		for k := range req.Header {
			if a, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok {
				attrs[a] = req.Header.Get(k)
			}
		}
		r.events = append(r.events, attrs)
		return
	}
	for _, e := range evs {
		attrs := map[string]string{}
		for k, v := range e {
			if s, ok := v.(string); ok {
				attrs[k] = s
			}
		}
		r.events = append(r.events, attrs)
	}
}

// types: knative in every content mode, batches included: ApiServerSource's
// type and extensions, and partitionkey.
func TestKnativeTypesAndExtensions(t *testing.T) {
	for name, c := range map[string]config.WebhookSink{
		"structured": {Types: "knative"},
		"binary":     {Types: "knative", Mode: config.ModeBinary},
		"batch":      {Types: "knative", Batch: 10},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &ceReceiver{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c.URL = srv.URL
			s := newSink(t, c)
			added, deleted := sinktest.Event(1, 1), sinktest.Event(1, 2)
			added.Type, deleted.Type = event.Added.Type(), event.Deleted.Type()
			if err := s.Send(context.Background(), []*event.Event{added, deleted}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(rec.events) != 2 {
				t.Fatalf("received %d events, want 2", len(rec.events))
			}
			for i, want := range []string{event.KnativeTypeAdd, event.KnativeTypeDelete} {
				a := rec.events[i]
				if a["type"] != want || a["partitionkey"] != "uid-1" || a["kind"] != "ConfigMap" || a["apiversion"] != "v1" || a["name"] != "obj-1" || a["namespace"] != "ns" {
					t.Errorf("event %d: %v; want type %s, partitionkey uid-1 and the object's kind, apiversion, name, namespace", i, a, want)
				}
			}
			if added.Type != event.Added.Type() {
				t.Errorf("the sink changed the event's type to %s", added.Type)
			}
		})
	}
}
