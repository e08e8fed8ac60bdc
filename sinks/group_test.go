package sinks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// lingerGroup counts writes and the entries of each.
func lingerGroup(linger time.Duration) (*Group, func() []int) {
	var mu sync.Mutex
	var sizes []int
	g := NewGroup(4096, func(es []GroupEntry) []error {
		mu.Lock()
		sizes = append(sizes, len(es))
		mu.Unlock()
		return nil
	})
	g.SetLinger(linger)
	return g, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), sizes...)
	}
}

// Entries published one after another within the linger share one write.
func TestGroupLingerGathersEntries(t *testing.T) {
	g, sizes := lingerGroup(time.Hour) // only Close or a full batch ends the wait
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		if err := g.Publish(context.Background(), []*event.Event{{ID: "e"}}, func(error) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	if s := sizes(); len(s) != 0 {
		t.Fatalf("written %v before the linger ended", s)
	}
	// Close ends the wait at once: nothing lingers through a shutdown.
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if s := sizes(); len(s) != 1 || s[0] != 3 {
		t.Fatalf("writes %v, want one of 3 entries", s)
	}
}

// A full batch is written without waiting out the linger.
func TestGroupLingerEndsWhenFull(t *testing.T) {
	g, sizes := lingerGroup(time.Hour)
	done := make(chan struct{}, lingerFull)
	for i := 0; i < lingerFull; i++ {
		if err := g.Publish(context.Background(), []*event.Event{{ID: "e"}}, func(error) { done <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < lingerFull; i++ {
		<-done
	}
	total := 0
	for _, n := range sizes() {
		total += n
	}
	if total != lingerFull {
		t.Fatalf("writes %v, want %d entries written", sizes(), lingerFull)
	}
	_ = g.Close(context.Background())
}

// Without a linger, a lone entry is written at once.
func TestGroupWithoutLingerWritesAtOnce(t *testing.T) {
	g, sizes := lingerGroup(0)
	if err := g.Send(context.Background(), []*event.Event{{ID: "e"}}); err != nil {
		t.Fatal(err)
	}
	if s := sizes(); len(s) != 1 {
		t.Fatalf("writes %v", s)
	}
	_ = g.Close(context.Background())
}

// A window smaller than lingerFull that is full ends the linger: nothing
// more can arrive (Publish blocks), so waiting out the linger only holds
// the entries and the publishers back.
func TestGroupLingerEndsWhenTheWindowIsFull(t *testing.T) {
	const window = 4
	var writes atomic.Int32
	g := NewGroup(window, func(es []GroupEntry) []error {
		writes.Add(1)
		return nil
	})
	g.SetLinger(time.Hour) // only a full batch, a full window or Close ends it
	defer g.Close(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < window; i++ {
		wg.Add(1)
		if err := g.Publish(context.Background(), []*event.Event{{ID: "e"}}, func(error) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	// The guard only bounds the failure: a full window written at once
	// takes no time.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Publish(ctx, []*event.Event{{ID: "next"}}, func(error) {}); err != nil {
		t.Fatalf("a publish behind a full window: %v (the window was held for the linger; %d writes)", err, writes.Load())
	}
	wg.Wait()
}

// Close whose context has ended while entries linger: every done is called
// once before Close returns, and the window's slots are given back, so a
// Publish after Close fails at once with errClosed instead of waiting for
// slots nobody will free.
func TestGroupCloseDuringLingerFreesTheWindow(t *testing.T) {
	for round := 0; round < 20; round++ {
		const window = 3
		g := NewGroup(window, func(es []GroupEntry) []error { return nil })
		g.SetLinger(time.Hour)
		var calls [window]atomic.Int32
		for i := 0; i < window; i++ {
			if err := g.Publish(context.Background(), []*event.Event{{ID: "e"}}, func(error) { calls[i].Add(1) }); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = g.Close(ctx)
		for i := range calls {
			if n := calls[i].Load(); n != 1 {
				t.Fatalf("round %d: entry %d: %d done calls when Close returned, want 1", round, i, n)
			}
		}
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := g.Publish(pctx, []*event.Event{{ID: "late"}}, func(error) { t.Error("done of a publish that failed") })
		pcancel()
		if !errors.Is(err, errClosed) {
			t.Fatalf("round %d: publish after Close: %v, want errClosed", round, err)
		}
	}
}

// Linger 0 writes a lone entry at once, and a full batch under a linger is
// written at once too; neither waits for the other.
func TestGroupLingerZeroAndFullBatchWriteAtOnce(t *testing.T) {
	for _, linger := range []time.Duration{0, time.Hour} {
		var mu sync.Mutex
		var sizes []int
		g := NewGroup(4096, func(es []GroupEntry) []error {
			mu.Lock()
			sizes = append(sizes, len(es))
			mu.Unlock()
			return nil
		})
		g.SetLinger(linger)
		n := 1
		if linger > 0 {
			n = lingerFull
		}
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			if err := g.Publish(context.Background(), []*event.Event{{ID: "e"}}, func(err error) {
				if err != nil {
					t.Error(err)
				}
				wg.Done()
			}); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait() // before Close: the write did not wait for it
		if err := g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, s := range sizes {
			total += s
		}
		if total != n {
			t.Errorf("linger %v: writes %v, want %d entries", linger, sizes, n)
		}
	}
}

// Close returns only after every done was called, as the AsyncSink
// contract says, also when its ctx ends while a write is still running:
// the done of an entry whose write is stuck comes (with an error) before
// Close returns, so that nothing records a late ack into a checkpoint the
// caller closes next, and the file sink does not close its file under a
// running write.
func TestGroupCloseCallsEveryDoneEvenWhenCtxEnds(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	g := NewGroup(4, func(es []GroupEntry) []error {
		close(entered)
		<-release // a write stuck on a full pipe or a slow disk
		return nil
	})
	var called atomic.Int32
	if err := g.Publish(context.Background(), []*event.Event{{ID: "1"}}, func(error) { called.Add(1) }); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown budget is spent (or the Lease was lost)
	_ = g.Close(ctx)
	n := called.Load()
	close(release)
	if n != 1 {
		t.Fatalf("Close returned with %d of 1 done called", n)
	}
}
