package kafka_test

import (
	"context"
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
