package sinks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitUntil polls cond for up to a second.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// Two acquirers that each need the whole window, behind a full one: the
// slots freed go to one of them whole, never split between them (a split
// would leave both waiting for each other until their contexts ended).
func TestWindowAllOrNothingUnderContention(t *testing.T) {
	for round := 0; round < 20; round++ {
		w := NewWindow(4)
		if err := w.Acquire(context.Background(), 4); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() { res <- w.Acquire(ctx, 3) }()
		}
		waitUntil(t, "an acquirer waits", w.Waiting)
		// Freed one at a time: a window taking slots one by one would hand
		// them to whichever acquirer is quicker.
		for i := 0; i < 4; i++ {
			w.Release(1)
		}
		if err := <-res; err != nil {
			t.Fatalf("round %d: first acquirer: %v", round, err)
		}
		if n := w.Held(); n != 3 {
			t.Fatalf("round %d: %d slots held, want the winner's 3", round, n)
		}
		w.Release(3)
		if err := <-res; err != nil {
			t.Fatalf("round %d: second acquirer: %v", round, err)
		}
		cancel()
	}
}

// Many acquirers of random sizes: the slots held never exceed the window,
// and everything ends with none held.
func TestWindowNeverOverfills(t *testing.T) {
	w := NewWindow(5)
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				n := 1 + (g+i)%5
				if err := w.Acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				now := inUse.Add(int64(n))
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				inUse.Add(-int64(n))
				w.Release(n)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 5 {
		t.Errorf("%d slots in use at once in a window of 5", p)
	}
	if n := w.Held(); n != 0 {
		t.Errorf("%d slots held at the end", n)
	}
}

// An acquirer whose context ends while part of what it needs is free
// takes none of it: the free slots go to the next acquirer at once.
func TestWindowContextEndsWaitTakingNothing(t *testing.T) {
	w := NewWindow(3)
	if err := w.Acquire(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- w.Acquire(ctx, 3) }()
	waitUntil(t, "the acquirer waits", w.Waiting)
	// Behind it, one that fits in the free slot: it waits for the turn.
	other := make(chan error, 1)
	go func() { other <- w.Acquire(context.Background(), 1) }()
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled acquire: %v, want context.Canceled", err)
	}
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("the free slot was not given to the next acquirer: the cancelled one kept part of the window")
	}
	if n := w.Held(); n != 3 {
		t.Errorf("%d slots held, want 2 + 1", n)
	}
	// An acquirer waiting for the turn honours its context too.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	go func() { res <- w.Acquire(context.Background(), 3) }()
	waitUntil(t, "the acquirer waits", w.Waiting)
	if err := w.Acquire(ctx2, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire waiting for the turn: %v, want context.DeadlineExceeded", err)
	}
	w.Release(3)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

// A context already done fails Acquire even with the window empty.
func TestWindowDoneContext(t *testing.T) {
	w := NewWindow(2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 10; i++ {
		if err := w.Acquire(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("acquire with a done context: %v", err)
		}
	}
	if n := w.Held(); n != 0 {
		t.Errorf("%d slots held", n)
	}
}

// Close ends the wait of the acquirer holding the turn and of those
// waiting for it, with ErrWindowClosed, and fails later ones at once.
func TestWindowCloseEndsWaits(t *testing.T) {
	w := NewWindow(2)
	if err := w.Acquire(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	const waiters = 4
	res := make(chan error, waiters)
	for i := 0; i < waiters; i++ {
		go func() { res <- w.Acquire(context.Background(), 1+i%2) }()
	}
	waitUntil(t, "an acquirer waits", w.Waiting)
	w.Close()
	for i := 0; i < waiters; i++ {
		select {
		case err := <-res:
			if !errors.Is(err, ErrWindowClosed) {
				t.Errorf("waiter: %v, want ErrWindowClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Close did not end a wait")
		}
	}
	w.Release(2) // slots held at Close are still given back
	if err := w.Acquire(context.Background(), 1); !errors.Is(err, ErrWindowClosed) {
		t.Errorf("acquire after Close: %v, want ErrWindowClosed", err)
	}
	w.Close() // twice is fine
	if n := w.Held(); n != 0 {
		t.Errorf("%d slots held", n)
	}
}

// Release never blocks: not with nobody waiting, not with the wake-up
// already pending, not after Close, not for more than is held.
func TestWindowReleaseNeverBlocks(t *testing.T) {
	w := NewWindow(3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			if err := w.Acquire(context.Background(), 3); err != nil {
				t.Error(err)
				return
			}
			w.Release(1)
			w.Release(1)
			w.Release(1)
		}
		w.Release(5) // more than held: counted as none held
		w.Close()
		w.Release(1)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Release blocked")
	}
	if n := w.Held(); n != 0 {
		t.Errorf("%d slots held", n)
	}
}

// Sizes at the edges: n == size waits for the whole window; n == 0 takes
// nothing; n > size is an error at once, since it could never be met; a
// size below 1 is 1.
func TestWindowSizes(t *testing.T) {
	w := NewWindow(3)
	if err := w.Acquire(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- w.Acquire(context.Background(), 3) }()
	waitUntil(t, "the whole-window acquirer waits", w.Waiting)
	w.Release(1)
	if err := <-res; err != nil {
		t.Fatalf("acquire of the whole window: %v", err)
	}
	if err := w.Acquire(context.Background(), 0); err != nil {
		t.Errorf("acquire of nothing on a full window: %v", err)
	}
	w.Release(3)
	if err := w.Acquire(context.Background(), 4); err == nil {
		t.Error("acquire of more than the window: nil error")
	}
	if n := w.Held(); n != 0 {
		t.Errorf("%d slots held", n)
	}
	if s := NewWindow(0).Size(); s != 1 {
		t.Errorf("NewWindow(0).Size() = %d, want 1", s)
	}
}
