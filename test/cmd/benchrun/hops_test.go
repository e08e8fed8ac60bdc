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

// TestHopsCompleteWhenCounted: once the agent has counted n acked events
// (when it writes the BENCH_LATDUMP file), every stamped one's hops are
// recorded (steady modes), and odd objects neither panic nor count a
// latency. Run with -race: the hops of the last acks were appended after
// they were counted, while the agent read them.
func TestHopsCompleteWhenCounted(t *testing.T) {
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

// createdStamp reads the writer's stamp and nothing else: warm-up objects,
// nulls and odd types carry none; a stamp beyond 2^53 stays exact.
func TestCreatedStamp(t *testing.T) {
	for name, tc := range map[string]struct {
		obj  map[string]any
		want int64
		ok   bool
	}{
		"stamped":       {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "1796000000000000001"}}}, 1796000000000000001, true},
		"2^53+1":        {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "9007199254740993"}}}, 9007199254740993, true},
		"warm-up":       {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/warmup": "true"}}}, 0, false},
		"no metadata":   {map[string]any{}, 0, false},
		"null metadata": {map[string]any{"metadata": nil}, 0, false},
		"null stamp":    {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": nil}}}, 0, false},
		"not a number":  {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": "soon"}}}, 0, false},
		"a number type": {map[string]any{"metadata": map[string]any{"annotations": map[string]any{"bench/created": int64(5)}}}, 0, false},
	} {
		if got, ok := createdStamp(tc.obj); got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", name, got, ok, tc.want, tc.ok)
		}
	}
}
