package kafka_test

import (
	"context"
	"fmt"
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
