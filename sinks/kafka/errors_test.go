package kafka_test

import (
	"context"
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
