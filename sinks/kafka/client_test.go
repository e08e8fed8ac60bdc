package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Send waits for its records' acks and a worker sends one key at a time, so
// a producer that lingers for more records holds every Send back: with
// franz-go's default 10ms linger, `make bench` measured kubefeed at about
// 700 events/s into kfake with 8 workers, ten times less than without.
func TestProducerDoesNotLinger(t *testing.T) {
	for _, acks := range []string{acksAll, acksLeader} {
		t.Run(acks, func(t *testing.T) {
			c := Config{Brokers: []string{"127.0.0.1:1"}, Acks: acks}
			c.Topic = "t"
			c.MaxMessageBytes = defaultMaxMessageBytes
			opts, err := clientOptions(c, defaultMaxInFlight, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.ProducerLinger); got != time.Duration(0) {
				t.Errorf("producer linger %v, want 0", got)
			}
		})
	}
}
