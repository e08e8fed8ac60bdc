package kafka_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// TestAuditGapBeforeOversizedEventIsProduced: the exporter sends a
// recovered scope's gap marker in front of the key's events and, on a
// permanent error, counts the marker as sent (deliver.go: gapSent after any
// permanent error). When one of those events is too large and there is no
// dead-letter topic, the marker (and every event before the oversized one)
// must still reach the topic, as the JetStream sink publishes and awaits
// what precedes the rejected event; otherwise the gap marker is lost
// silently.
func TestAuditGapBeforeOversizedEventIsProduced(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxMessageBytes = 64 << 10
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	g := gapEvent("configmaps -n ns", "configmaps", "ns")
	big := sinktest.Event(1, 1)
	big.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": strings.Repeat("x", 100<<10)}
	big.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
	if err := s.Send(context.Background(), []*event.Event{g, big}); !sinks.IsPermanent(err) {
		t.Fatalf("send: %v, want a permanent error for the oversized event", err)
	}
	gaps := 0
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		if e, _ := eventOf(t, r); e.ID == g.ID {
			gaps++
		}
	}
	if gaps != 3 {
		t.Errorf("the topic holds %d copies of the gap marker, want 3 (one per partition): the send that failed permanently dropped it", gaps)
	}
}
