package app

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// verify closes its NATS connection when done: that is no disconnection to
// warn about ("nats disconnected; reconnecting" on stderr after every run,
// even a matching one).
func TestVerifyClosesNATSWithoutWarning(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	core, logs := observer.New(zap.DebugLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, closeNATS, err := connectJetStream(ctx, config.NATSConnection{Servers: []string{srv.URL()}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// nats.go runs its callbacks in order on one goroutine: once the closed
	// handler ran, a disconnect handler queued by Close has run too.
	closed := make(chan struct{})
	js.Conn().SetClosedHandler(func(*nats.Conn) { close(closed) })
	closeNATS()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("connection never reported closed")
	}
	for _, e := range logs.All() {
		if e.Level >= zap.WarnLevel {
			t.Errorf("closing logged %s %q %v", e.Level, e.Message, e.ContextMap())
		}
	}
}
