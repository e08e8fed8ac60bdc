package kafka

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/sinks"
)

// A publish the broker does not acknowledge within deliveryTimeout is
// answered then, retryably, once; its records keep their slots of the
// window until kgo answers them (so kgo's buffer stays bounded), and their
// late acks neither answer it again nor count in Stats (its retry does).
func TestExpiredPublishAnswersOnceAndKeepsItsSlots(t *testing.T) {
	s := &Sink{win: sinks.NewWindow(4), log: zap.NewNop()}
	s.answers = newAnswers(s.pending.Done)
	defer s.answers.stop()
	if err := s.win.Acquire(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []error
	b := &batch{s: s, slots: 2, encoded: encoded{tally: tally{gapRecords: 1}}, done: func(err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
	}}
	b.left.Store(2)
	if !s.track(b) {
		t.Fatal("track refused an open sink")
	}
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

// The sweep answers a publish once it has been outstanding for more than
// deliveryTimeout (deliveryTimeout/sweepEvery sweeps after the one it was
// handed over in), not before, retryably, and leaves younger ones alone.
func TestSweepAnswersPublishesOlderThanTheDeliveryTimeout(t *testing.T) {
	s := &Sink{win: sinks.NewWindow(4), log: zap.NewNop()}
	s.answers = newAnswers(s.pending.Done)
	defer s.answers.stop()
	var oldErr error
	publish := func(done func(error)) *batch {
		b := &batch{s: s, done: done}
		b.left.Store(1)
		if !s.track(b) {
			t.Fatal("track refused an open sink")
		}
		return b
	}
	old := publish(func(err error) { oldErr = err })
	sweeps := int(deliveryTimeout / sweepEvery)
	for range sweeps - 1 {
		s.sweepOnce()
	}
	young := publish(func(error) {})
	s.sweepOnce() // old is at most deliveryTimeout old
	if old.answered.Load() {
		t.Fatalf("answered after %d sweeps, before deliveryTimeout", sweeps)
	}
	s.sweepOnce() // now more
	if !old.answered.Load() {
		t.Fatalf("not answered after %d sweeps, past deliveryTimeout", sweeps+1)
	}
	if young.answered.Load() {
		t.Errorf("a publish answered 2 sweeps after it was handed over")
	}
	young.promise(&kgo.Record{Topic: "t"}, nil) // acknowledged: answered
	s.pending.Wait()                            // every done returned
	if !errors.Is(oldErr, errNoAck) || sinks.IsPermanent(oldErr) {
		t.Errorf("done got %v, want a retryable error saying no ack came", oldErr)
	}
	if s.head != nil || s.tail != nil {
		t.Errorf("publishes still listed after all were answered")
	}
}
