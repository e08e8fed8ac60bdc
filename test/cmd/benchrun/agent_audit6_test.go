package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// ackElsewhere is an AsyncSink that acknowledges on another goroutine, as
// JetStream's PubAck handler does.
type ackElsewhere struct{}

func (ackElsewhere) Send(context.Context, []*event.Event) error { return nil }
func (ackElsewhere) Close(context.Context) error                { return nil }
func (ackElsewhere) Publish(_ context.Context, _ []*event.Event, done func(error)) error {
	go done(nil)
	return nil
}

// stamped is an event of an object written with a bench/created stamp, or
// odd: without metadata, annotations or data.
func stamped(i int) *event.Event {
	var obj map[string]any
	switch i % 4 {
	case 1:
		obj = map[string]any{"metadata": nil}
	case 2:
		obj = map[string]any{"metadata": map[string]any{"annotations": "x"}}
	case 3:
		return &event.Event{ID: strconv.Itoa(i)}
	default:
		obj = map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": strconv.FormatInt(time.Now().UnixNano(), 10)}}}
	}
	return &event.Event{ID: strconv.Itoa(i), Time: time.Now(), Data: &event.ChangeData{Object: obj}}
}

// TestAudit6HopsCompleteWhenCounted: once the agent has counted n acked
// events (when it writes the BENCH_LATDUMP file), every stamped one's hops
// are recorded (steady modes), and odd objects neither panic nor count a latency. Run
// with -race: the hops of the last acks were appended after they were
// counted, while the agent read them.
func TestAudit6HopsCompleteWhenCounted(t *testing.T) {
	old := latDump
	latDump = t.TempDir()
	defer func() { latDump = old }()
	for _, drain := range []bool{false, true} {
		c := &counter{inner: ackElsewhere{}, drain: drain}
		const n = 400
		for i := 0; i < n; i++ {
			if err := c.Publish(context.Background(), []*event.Event{stamped(i)}, func(error) {}); err != nil {
				t.Fatal(err)
			}
		}
		for c.n.Load() < n { // as agent waits for done()
			runtime.Gosched()
		}
		path := filepath.Join(latDump, "hops")
		if err := c.writeHops(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(string(b), "\n") - 1; !drain && lines != n/4 {
			t.Errorf("drain %v: %d hops written once %d events were counted, want %d", drain, lines, n, n/4)
		}
		c.mu.Lock()
		if want := n / 4; drain && len(c.lat) != 0 || !drain && len(c.lat) != want {
			t.Errorf("drain %v: %d latencies, want %d", drain, len(c.lat), want)
		}
		c.mu.Unlock()
	}
}
