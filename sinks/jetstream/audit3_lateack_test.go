package jetstream

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/sinks"
)

// TestAudit3LateAckDoesNotCountForTheRetry: e1 times out and is
// published again; the first attempt's ack, arriving late, must not
// resolve the retry, whose own (failing) ack decides it.
func TestAudit3LateAckDoesNotCountForTheRetry(t *testing.T) {
	released := 0
	a := newAcker("_INBOX.t", "KUBEFEED", time.Second, 16, func(n int) { released += n }, func() {})
	o := newOutcomes()
	_, s1 := handOver(a, "first", o, "e1")
	a.expire(time.Now().Add(time.Hour))
	waitAnswers(a)
	if got := o.get("first"); len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) || sinks.IsPermanent(got[0]) {
		t.Fatalf("first attempt: done calls %v, want one retryable timeout", got)
	}
	_, s2 := handOver(a, "retry", o, "e1")
	if s1 == s2 {
		t.Fatalf("the retry reuses sequence %d", s1)
	}
	a.onAck(ackMsg(a, s1, `{"stream":"KUBEFEED","seq":1}`), true) // late
	if got := o.get("retry"); len(got) != 0 {
		t.Fatalf("the first attempt's late ack resolved the retry: %v", got)
	}
	a.onAck(ackMsg(a, s2, `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`), true)
	if got := o.get("retry"); len(got) != 1 || got[0] == nil {
		t.Fatalf("retry: done calls %v, want one error", got)
	}
	if released != 2 || a.waiting() != 0 || a.published.Load() != 0 {
		t.Errorf("released %d slots, %d waiting, %d published; want 2, 0, 0", released, a.waiting(), a.published.Load())
	}
}

// TestAudit3TimeoutsFireWhenPublishesStop: the reader fires ack timeouts
// with no publish coming after the one whose ack is lost, whether the
// last publishes came close together (the busy poll) or not.
func TestAudit3TimeoutsFireWhenPublishesStop(t *testing.T) {
	for _, busy := range []bool{false, true} {
		a := newAcker("_INBOX.t", "KUBEFEED", 50*time.Millisecond, 16, func(int) {}, func() {})
		a.start(nil)
		o := newOutcomes()
		if busy {
			for i := 0; i < 5; i++ {
				_, first := handOver(a, "warm", o, "w")
				a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
			}
		}
		handOver(a, "lost", o, "e1")
		deadline := time.After(10 * time.Second)
		for len(o.get("lost")) == 0 {
			select {
			case <-o.calls:
			case <-deadline:
				a.halt()
				t.Fatalf("busy=%v: no timeout 10s after a lost ack (ack timeout 50ms)", busy)
			}
		}
		a.halt()
		if got := o.get("lost"); len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) {
			t.Errorf("busy=%v: done calls %v, want one timeout", busy, got)
		}
	}
}
