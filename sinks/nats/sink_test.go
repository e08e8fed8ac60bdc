package nats_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	natssink "github.com/kubefeed/kubefeed/sinks/nats"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func TestConformance(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	// A subscriber that reconnects with the server records what it gets.
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var ids []string
	var reconnects uint64
	if _, err := nc.Subscribe("kubefeed.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		var e struct{ ID string }
		_ = jsonUnmarshal(m.Data, &e)
		ids = append(ids, e.ID)
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinks.Sink {
			s, err := natssink.New(natssink.Options{Config: config.NATSSink{
				NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}},
				Subject:        config.DefaultSubject,
			}})
			if err != nil {
				t.Fatal(err)
			}
			waitConnected(t, s)
			return s
		},
		Received: func(*testing.T) []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), ids...)
		},
		Break: func(*testing.T) {
			reconnects = nc.Stats().Reconnects
			srv.Shutdown()
		},
		Heal: func(t *testing.T) {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			// Core NATS is at most once: wait for the subscriber to be back
			// on the new server (IsConnected alone may still describe the
			// connection to the old one, not yet seen to be gone).
			deadline := time.Now().Add(10 * time.Second)
			for (nc.Stats().Reconnects <= reconnects || !nc.IsConnected()) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if err := nc.Flush(); err != nil {
				t.Fatalf("subscriber not back after the restart: %v", err)
			}
		},
		AtMostOnce: true,
	})
}

func waitConnected(t *testing.T, s sinks.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if err := s.Send(ctx, nil); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("nats sink never connected")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
