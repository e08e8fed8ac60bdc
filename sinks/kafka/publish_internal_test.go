package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/sinks"
)

// A publish the broker does not acknowledge within deliveryTimeout is
// answered then, retryably, once; its records keep their slots of the
// window until kgo answers them (so kgo's buffer stays bounded), and their
// late acks neither answer it again nor count in Stats (its retry does).
func TestExpiredPublishAnswersOnceAndKeepsItsSlots(t *testing.T) {
	s := &Sink{win: sinks.NewWindow(4), outstanding: map[*batch]struct{}{}, log: zap.NewNop()}
	s.answers = newAnswers(s.pending.Done)
	defer s.answers.stop()
	if err := s.win.Acquire(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []error
	b := &batch{s: s, slots: 2, tally: tally{gapRecords: 1}, done: func(err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
	}}
	b.left.Store(2)
	if !s.track(b) {
		t.Fatal("track refused an open sink")
	}
	b.timer = time.AfterFunc(time.Hour, func() {})
	b.expire()
	s.pending.Wait() // the done returned
	if s.win.Held() != 2 {
		t.Errorf("%d slots held after the timeout, want the publish's 2 until kgo answers its records", s.win.Held())
	}
	r := &kgo.Record{Topic: "t"}
	b.promise(r, nil)
	b.promise(r, nil)
	if s.win.Held() != 0 {
		t.Errorf("%d slots held after kgo answered every record, want 0", s.win.Held())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !errors.Is(got[0], errNoAck) || sinks.IsPermanent(got[0]) {
		t.Errorf("done got %v, want one retryable error saying no ack came", got)
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("stats %+v after a publish that timed out, want none counted", st)
	}
}
