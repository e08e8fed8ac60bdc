package jetstream

import (
	"context"
	"testing"
	"time"
)

// TestWindowAcquireNoPartialDeadlock: acquire takes a publish's slots all
// or none, one publish at a time, so two publishes that each need the
// whole window never split the free slots between them and then wait for
// each other. With nothing in flight nothing would release a slot: both
// would stay blocked until their contexts end (30 s SendTimeout in the
// exporter), then fail, be retried and deadlock again. It matters when
// maxPending is smaller than the events of the publishes that run at once
// (e.g. maxPending: 2 and a uid change = deleted + added). In every round,
// one of the two acquisitions completes.
func TestWindowAcquireNoPartialDeadlock(t *testing.T) {
	const rounds = 3
	deadlocks := 0
	for round := 0; round < rounds; round++ {
		w := newWindow(2)
		ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
		if err := w.acquire(ctx, 2); err != nil { // the window is full: two messages in flight
			t.Fatal(err)
		}
		res := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() { res <- w.acquire(ctx, 2) }()
		}
		time.Sleep(10 * time.Millisecond) // both wait for the window
		w.release(2)                      // the two in-flight acks arrive
		first := <-res
		if first == nil {
			w.release(2) // the winner's batch is acknowledged
		}
		second := <-res
		cancel()
		if first != nil && second != nil {
			deadlocks++
		}
	}
	if deadlocks > 0 {
		t.Fatalf("%d of %d rounds: two publishes each held part of the window and neither could complete (deadlock until their contexts ended)", deadlocks, rounds)
	}
}
