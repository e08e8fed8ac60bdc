package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

func kafkatestSASL(mech, user, pass string) []kfake.Opt {
	return []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, user, pass)}
}

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

// A broker that refuses a record for its size although the sink's limit
// admitted it (the topic's limit was lowered under it): retryable, and the
// retry names the limit to change.
func TestBrokerRefusingSizeIsRetryableAndExplained(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); err != nil {
		t.Fatal(err)
	}
	h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.MessageTooLarge})
	defer h.Remove()
	err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 2)})
	if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "larger than the topic accepts") {
		t.Fatalf("send refused for size: %v, want a retryable error saying so", err)
	}
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 2)}); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestProduceErrorsAreRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *kerr.Error
	}{
		{"retriable broker error", kerr.NotEnoughReplicas},
		{"not authorized", kerr.TopicAuthorizationFailed},
		{"unknown server error", kerr.UnknownServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc := kafkatest.StartT(t, kafkatest.Options{})
			s := newSink(t, sinkConfig(kc.Addr()))
			defer s.Close(context.Background())
			h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: tc.err, Count: -1})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := s.Send(ctx, []*event.Event{sinktest.Event(1, 1)})
			cancel()
			h.Remove()
			if err == nil || sinks.IsPermanent(err) {
				t.Fatalf("send failing with %v: %v, want a retryable error", tc.err, err)
			}
			// The caller retries, as the queue would (the first retry may
			// still meet the failed send's batch).
			var failures sync.Map
			if err := sendUntilAcked(s, &failures, sinktest.Event(1, 1)); err != nil {
				t.Fatalf("retry after the fault: %v", err)
			}
			if n := len(records(t, kc.Addr(), "kubefeed")); n < 1 {
				t.Errorf("topic holds %d records after the retry", n)
			}
		})
	}
}

// One partition fails in the middle of a batch: the send fails, the other
// partitions' records are written, and the retry of the whole batch leaves
// every event on the topic, each object's versions in order.
func TestFailureMidBatchLosesNothing(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	var batch []*event.Event
	for o := 0; o < 12; o++ {
		batch = append(batch, sinktest.Event(o, 1))
	}
	h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "kubefeed", Partitions: []int32{1}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := s.Send(ctx, batch)
	cancel()
	h.Remove()
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("send with a failing partition: %v, want a retryable error", err)
	}
	var failures sync.Map
	if err := sendUntilAcked(s, &failures, batch...); err != nil {
		t.Fatal(err)
	}
	next := make([]*event.Event, len(batch))
	for o := range next {
		next[o] = sinktest.Event(o, 2)
	}
	if err := s.Send(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	checkEveryVersion(t, kc.Addr(), 12, 2)
}

// checkEveryVersion asserts that the topic holds versions 1..versions of
// objects 0..objects-1, each object's in order (duplicates allowed).
func checkEveryVersion(t *testing.T, addr string, objects, versions int) {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	for _, r := range records(t, addr, "kubefeed") {
		e, _ := eventOf(t, r)
		var rv int
		fmt.Sscan(e.ResourceVersion, &rv)
		if rv < last[e.UID] {
			t.Errorf("%s: version %d after %d", e.UID, rv, last[e.UID])
		}
		last[e.UID] = rv
		seen[e.ID] = true
	}
	for o := 0; o < objects; o++ {
		for v := 1; v <= versions; v++ {
			if id := sinktest.Event(o, v).ID; !seen[id] {
				t.Errorf("event %s lost", id)
			}
		}
	}
}

// The broker goes away while four workers send, and comes back on the same
// port: each worker retries its failed send as the queue would, and no
// event is lost or reordered.
func TestBrokerOutageLosesNothing(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	const objects, versions, workers = 16, 30, 4
	var failures sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				for o := w; o < objects; o += workers {
					if err := sendUntilAcked(s, &failures, sinktest.Event(o, v)); err != nil {
						errs <- err
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	kc.Shutdown()
	time.Sleep(1500 * time.Millisecond)
	if err := kc.Restart(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	failures.Range(func(_, _ any) bool { n++; return true })
	if n == 0 {
		t.Fatal("no send failed during the outage: the test did not test one")
	}
	checkEveryVersion(t, kc.Addr(), objects, versions)
}

// sendUntilAcked sends like the caller's queue: again after each
// retryable failure (recorded in failures), until acknowledged.
func sendUntilAcked(s sinks.Sink, failures *sync.Map, events ...*event.Event) error {
	e := events[0]
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.Send(ctx, events)
		cancel()
		if err == nil {
			return nil
		}
		if sinks.IsPermanent(err) {
			return fmt.Errorf("%s: permanent error %w", e.ID, err)
		}
		failures.Store(e.ID, err)
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still failing: %w", e.ID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
