package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

// The first produce request of a publish fails while the rest of its
// records wait behind it in the producer: no record of the publish may
// reach the topic after one of it that did not (a consumer would see a
// later version, then the retry's earlier one), so that after the retry
// each object's versions are in order (doc.go: kgo "fails every record
// buffered behind one that failed").
func TestAudit2FailedRequestKeepsPublishOrder(t *testing.T) {
	for _, acks := range []string{"", "leader"} {
		t.Run("acks="+acks, func(t *testing.T) {
			kc := kafkatest.StartT(t, kafkatest.Options{})
			cfg := sinkConfig(kc.Addr())
			cfg.Provision.Partitions = 1
			if acks != "" {
				cfg.Acks = acks
			}
			s := newSink(t, cfg)
			defer s.Close(context.Background())
			if err := s.Send(context.Background(), []*event.Event{sinktest.Event(0, 1)}); err != nil {
				t.Fatal(err)
			}
			const versions = 40
			var batch []*event.Event
			for v := 1; v <= versions; v++ {
				batch = append(batch, sinktest.Event(1, v))
			}
			// The broker answers the first produce request of the publish
			// only once every record was handed over, and fails it.
			handedOver := make(chan struct{})
			c := kc.Kfake()
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.SleepControl(func() { <-handedOver })
				return nil, nil, false
			})
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.UnknownServerError})
			res := make(chan error, 1)
			if err := s.Publish(context.Background(), batch, func(err error) { res <- err }); err != nil {
				t.Fatal(err)
			}
			close(handedOver)
			err := <-res
			h.Remove()
			if err == nil || h.Hits() != 1 {
				t.Fatalf("publish: %v after %d failed requests; the test did not test a failure", err, h.Hits())
			}
			var failures sync.Map
			if err := sendUntilAcked(s, &failures, batch...); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range records(t, kc.Addr(), "kubefeed") {
				e, _ := eventOf(t, r)
				got = append(got, e.ResourceVersion)
			}
			t.Logf("topic: %s", strings.Join(got, " "))
			checkEveryVersion(t, kc.Addr(), 2, 1)
		})
	}
}

// A produce request fails while a publish is still handing its records
// over (a publish of many records; in the exporter, a gap marker's copies
// to every partition followed by the recovered event): kgo fails what is
// buffered behind the failed request at once, but the sink learns of it
// only from the promise, on kgo's promise goroutine, and goes on handing
// records over meanwhile. kgo writes those (with the idempotent producer's
// new sequence), so a later record of the publish reaches the topic before
// the earlier ones the retry sends again: for one object, version 90, then
// 1..3000; for a gap marker, the recovered event before the marker on its
// partition. doc.go promises the events of one publish are written "in
// order or not after a failed one".
//
// The race is not forced: the failure has to arrive while the records are
// handed over, so the test tries five objects; without a fix most fail.
// What must hold is "in order, and nothing after a failed one": each
// attempt writes a prefix of the publish (versions 1, 2, … without a
// hole), and the retry starts again at version 1.
func TestAudit2RequestFailingDuringHandOverKeepsPublishOrder(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Provision.Partitions = 1
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(0, 1)}); err != nil {
		t.Fatal(err)
	}
	const objects, versions = 5, 300
	for o := 1; o <= objects; o++ {
		var batch []*event.Event
		for v := 1; v <= versions; v++ {
			batch = append(batch, sinktest.Event(o, v))
		}
		h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.UnknownServerError})
		err := s.Send(context.Background(), batch)
		h.Remove()
		if err == nil || h.Hits() != 1 {
			t.Fatalf("object %d: publish: %v after %d failed requests; the test did not test a failure", o, err, h.Hits())
		}
		var failures sync.Map
		if err := sendUntilAcked(s, &failures, batch...); err != nil {
			t.Fatal(err)
		}
	}
	last := map[string]int{}
	for i, r := range records(t, kc.Addr(), "kubefeed") {
		e, _ := eventOf(t, r)
		var rv int
		fmt.Sscan(e.ResourceVersion, &rv)
		if rv != 1 && rv != last[e.UID]+1 {
			t.Errorf("record %d: %s version %d after %d", i, e.UID, rv, last[e.UID])
		}
		last[e.UID] = rv
	}
	for o := 1; o <= objects; o++ {
		if uid := sinktest.Event(o, 1).UID; last[uid] != versions {
			t.Errorf("%s ends at version %d, want %d", uid, last[uid], versions)
		}
	}
}

// Publishes race broker failures, permanent errors (an event too large
// without a dead-letter topic), gap markers wider than the window and
// publishes of nothing, on a window of 4: every done comes exactly once
// (the publisher checks), the window ends empty (a publish that needs all
// of it goes through), and Stats count each publish answered for good
// exactly once.
func TestAudit2WindowAccountsForEveryPublish(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.MaxInFlight = 4
	cfg.MaxMessageBytes = 64 << 10
	cfg.Provision.Partitions = 3
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	p := &publisher{t: t, s: s}
	big := strings.Repeat("x", 100<<10)
	const objects, versions = 12, 8
	var produced, gaps, dropped, retried atomic.Int64
	// Fail produce requests on and off while they run. The first fault is
	// in place before any publish, so a fast run still meets failures.
	stop := make(chan struct{})
	faults := make(chan struct{})
	first := make(chan struct{})
	go func() {
		defer close(faults)
		for i := 0; ; i++ {
			h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{int32(i % 3)}, Err: kerr.UnknownServerError, Count: 2})
			if i == 0 {
				close(first)
			}
			time.Sleep(20 * time.Millisecond)
			h.Remove()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	<-first
	var wg sync.WaitGroup
	for o := 0; o < objects; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				var evs []*event.Event
				var recs, gapRecs, drops int64
				switch (o + v) % 5 {
				case 0: // a gap marker first: 3 records, the window is 4
					evs = append(evs, gapEvent(fmt.Sprintf("configmaps -n ns%d", o), "configmaps", "ns"))
					recs += 3
					gapRecs += 3
				case 1: // an event that can never be written, and one that can
					e := sinktest.Event(o, v)
					e.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": big}
					e.Data.(*event.ChangeData).ChangedPaths = []string{strings.Repeat("/p", 40<<10)}
					evs = append(evs, e)
					drops++
				case 2: // nothing
				}
				if (o+v)%5 != 2 {
					evs = append(evs, sinktest.Event(o, v))
					recs++
				}
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					res := make(chan error, 1)
					_, err := p.publish(ctx, evs, func(err error) { res <- err })
					cancel()
					if err == nil {
						err = <-res
					} else if !sinks.IsPermanent(err) {
						t.Errorf("object %d version %d: publish: %v", o, v, err)
						return
					}
					if err == nil || sinks.IsPermanent(err) {
						if err != nil && drops == 0 {
							t.Errorf("object %d version %d: permanent error %v", o, v, err)
						}
						if err == nil && drops > 0 {
							t.Errorf("object %d version %d: an event too large went through", o, v)
						}
						produced.Add(recs)
						gaps.Add(gapRecs)
						dropped.Add(drops)
						break
					}
					retried.Add(1)
					if attempt == 300 {
						t.Errorf("object %d version %d: still failing: %v", o, v, err)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-faults
	if retried.Load() == 0 {
		t.Error("no publish failed: the test did not test a failure")
	}
	t.Logf("%d attempts retried", retried.Load())
	// Every slot is back: a publish of the whole window goes through.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var four []*event.Event
	for o := 0; o < 4; o++ {
		four = append(four, sinktest.Event(100+o, 1))
	}
	if err := p.await(ctx, four...); err != nil {
		t.Fatalf("a publish of the whole window after the others: %v (slots leaked?)", err)
	}
	want := kafkaStats{Produced: produced.Load() + 4, GapRecords: gaps.Load(), Dropped: dropped.Load()}
	if st := s.Stats(); st.Produced != want.Produced || st.GapRecords != want.GapRecords || st.Dropped != want.Dropped || st.DeadLettered != 0 {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

type kafkaStats struct{ Produced, GapRecords, Dropped int64 }
