package natsconn

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The connection gives up on a server that stops answering within half a
// minute (not nats.go's default of minutes), reconnects without end, and
// keeps the config's name.
func TestOptionsDetectAStalledServer(t *testing.T) {
	opts, err := options(Config{Servers: []string{"nats://127.0.0.1:4222"}, Name: "feed"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := nats.GetDefaultOptions()
	for _, f := range opts {
		if err := f(&o); err != nil {
			t.Fatal(err)
		}
	}
	if stale := o.PingInterval * time.Duration(o.MaxPingsOut+1); stale > 30*time.Second {
		t.Errorf("a stalled server is detected after up to %s (ping %s, %d outstanding), want at most 30s", stale, o.PingInterval, o.MaxPingsOut)
	}
	if o.MaxReconnect != -1 || !o.RetryOnFailedConnect || o.Name != "feed" {
		t.Errorf("MaxReconnect %d, RetryOnFailedConnect %v, Name %q", o.MaxReconnect, o.RetryOnFailedConnect, o.Name)
	}
}
