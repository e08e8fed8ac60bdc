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

func TestOversizedEventsFollowThePolicy(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxMessageBytes = 64 << 10
	cfg.DeadLetterTopic = "kubefeed.dead"
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	big := strings.Repeat("x", 100<<10)

	// 1: oldObject too large: dropped, object kept.
	e1 := sinktest.Event(1, 1)
	e1.Data.(*event.ChangeData).OldObject = map[string]any{"data": big}
	// 2: object too large, patch small: identity object, patch kept.
	e2 := sinktest.Event(2, 1)
	e2.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
	e2.Data.(*event.ChangeData).ChangedPaths = []string{"/data/v"}
	// 3: the patch itself is too large: a stub to the dead-letter topic.
	e3 := sinktest.Event(3, 1)
	e3.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
	e3.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
	// 4: just below the limit: sent whole.
	e4 := sinktest.Event(4, 1)
	e4.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": strings.Repeat("y", 60<<10)}
	if err := s.Send(context.Background(), []*event.Event{e1, e2, e3, e4}); err != nil {
		t.Fatal(err)
	}
	rs := records(t, kc.Addr(), "kubefeed")
	got := map[string]event.ChangeData{}
	for _, r := range rs {
		e, d := eventOf(t, r)
		got[e.ID] = d
	}
	if len(rs) != 3 {
		t.Fatalf("topic holds %d records, want 3", len(rs))
	}
	if d := got[e1.ID]; d.Truncated != sinks.TruncatedOldObject || d.OldObject != nil || d.Object["data"] == nil {
		t.Errorf("event 1: truncated %q, oldObject %v", d.Truncated, d.OldObject != nil)
	}
	if d := got[e2.ID]; d.Truncated != sinks.TruncatedObject || d.Object["data"] != nil || len(d.ChangedPaths) != 1 || d.Object["metadata"].(map[string]any)["name"] != "obj-2" {
		t.Errorf("event 2: truncated %q, object %v", d.Truncated, d.Object)
	}
	if d, ok := got[e4.ID]; !ok || d.Truncated != "" {
		t.Errorf("event 4 (below the limit): present %v, truncated %q", ok, d.Truncated)
	}
	dead := records(t, kc.Addr(), "kubefeed.dead")
	if len(dead) != 1 {
		t.Fatalf("dead-letter topic holds %d records, want 1", len(dead))
	}
	if e, d := eventOf(t, dead[0]); e.ID != e3.ID || d.Truncated != sinks.TruncatedAll || string(dead[0].Key) != e3.UID {
		t.Errorf("dead letter: id %s truncated %q key %q", e.ID, d.Truncated, dead[0].Key)
	}
	if st := s.Stats(); st.DeadLettered != 1 || st.Shrunk != 2 {
		t.Errorf("stats %+v, want 2 shrunk and 1 dead-lettered", st)
	}

	// Without a dead-letter topic the event is a permanent error, counted.
	cfg.DeadLetterTopic = ""
	s2 := newSink(t, cfg)
	defer s2.Close(context.Background())
	if err := s2.Send(context.Background(), []*event.Event{e3}); !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "no deadLetterTopic") {
		t.Errorf("oversized without dead letter: %v, want a permanent error", err)
	}
	if st := s2.Stats(); st.Dropped != 1 {
		t.Errorf("stats %+v, want 1 dropped", st)
	}
}

// TestGapBeforeOversizedEventIsProduced: the exporter sends a recovered
// scope's gap marker in front of the key's events and, on a permanent
// error, counts the marker as sent. When one of those events is too large
// and there is no dead-letter topic, the marker (and every event before
// the oversized one) still reaches the topic before the permanent error
// is reported, as the JetStream sink publishes and awaits what precedes
// the rejected event: the gap marker is never lost silently.
func TestGapBeforeOversizedEventIsProduced(t *testing.T) {
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
