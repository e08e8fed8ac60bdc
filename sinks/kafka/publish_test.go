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

// A send that fails on one partition has its other records acknowledged;
// the caller retries the whole send. Each record of the send is then
// counted once in Produced, however many attempts it took, and so is each
// gap copy in GapRecords.
func TestStatsCountARetriedRecordOnce(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	batch := []*event.Event{gapEvent("configmaps -n ns", "configmaps", "ns")}
	for o := 0; o < 12; o++ {
		batch = append(batch, sinktest.Event(o, 1))
	}
	for _, p := range []int32{0, 1, 2} {
		h := kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "kubefeed", Partitions: []int32{p}, Err: kerr.TopicAuthorizationFailed, Count: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := s.Send(ctx, batch)
		cancel()
		h.Remove()
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("send with partition %d failing: %v, want a retryable error", p, err)
		}
	}
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// 12 events and the gap marker's copy on each of the 3 partitions.
	if st := s.Stats(); st.Produced != 15 || st.GapRecords != 3 {
		t.Errorf("stats %+v after three failed attempts and one that succeeded, want 15 produced, 3 gap records", st)
	}
}

// The first produce request of a publish fails while the rest of its
// records wait behind it in the producer: no record of the publish may
// reach the topic after one of it that did not (a consumer would see a
// later version, then the retry's earlier one), so that after the retry
// each object's versions are in order (doc.go: kgo "fails every record
// buffered behind one that failed").
func TestFailedRequestKeepsPublishOrder(t *testing.T) {
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
// to every partition followed by the recovered event). kgo fails what is
// buffered behind the failed request at once, but the sink learns of it
// only from the promise, on kgo's promise goroutine; a record handed over
// meanwhile would be written (with the idempotent producer's new
// sequence), ahead of the earlier ones the retry sends again: for one
// object, a later version, then the first ones; for a gap marker, the
// recovered event before the marker on its partition. The sink hands the
// records of a publish over one after another, each once the one before it
// was acknowledged, so that they are written "in order or not after a
// failed one" (doc.go).
//
// The race is not forced: the failure has to arrive while the records are
// handed over, so the test tries five objects. What must hold is "in
// order, and nothing after a failed one": each attempt writes a prefix of
// the publish (versions 1, 2, … without a hole), and the retry starts
// again at version 1.
func TestRequestFailingDuringHandOverKeepsPublishOrder(t *testing.T) {
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

// A deletion's tombstone whose produce request fails after the deletion
// was written fails the publish; sent again, the key's records end with
// the tombstone, and none comes before the deletion.
func TestTombstoneFailingAfterItsDeletionIsSentAgainInOrder(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Tombstones = true
	s := newSink(t, cfg)
	del := sinktest.Event(1, 8)
	del.Type, del.ID = event.Deleted.Type(), event.ID(del.UID, "8", event.Deleted)
	// The second produce request (the tombstone, chained after the
	// deletion's ack) is answered with an error, once.
	var n atomic.Int32
	c := kc.Kfake()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if n.Add(1) != 2 {
			return nil, nil, false
		}
		req := r.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	var failures sync.Map
	if err := sendUntilAcked(s, &failures, del); err != nil {
		t.Fatal(err)
	}
	if _, failed := failures.Load(del.ID); !failed || n.Load() < 3 {
		t.Fatalf("the tombstone's request did not fail (%d produce requests): the test tested nothing", n.Load())
	}
	var seq []string
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		if string(r.Key) != del.UID {
			continue
		}
		if r.Value == nil {
			seq = append(seq, "tombstone")
		} else {
			seq = append(seq, "deleted")
		}
	}
	if len(seq) < 2 || seq[0] != "deleted" || seq[len(seq)-1] != "tombstone" {
		t.Errorf("records of the uid: %v, want the deletion first and the tombstone last", seq)
	}
}
