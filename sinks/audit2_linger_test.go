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

// A window smaller than lingerFull that is full ends the linger: nothing
// more can arrive (Publish blocks), so waiting out the linger only holds
// the entries and the publishers back.
func TestAudit2LingerEndsWhenTheWindowIsFull(t *testing.T) {
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
// Publish after Close fails at once with ErrClosed instead of waiting for
// slots nobody will free.
func TestAudit2CloseDuringLingerKeepsTheWindow(t *testing.T) {
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
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("round %d: publish after Close: %v, want ErrClosed", round, err)
		}
	}
}

// Linger 0 writes a lone entry at once, and a full batch under a linger is
// written at once too; neither waits for the other.
func TestAudit2LingerZeroAndFullBatch(t *testing.T) {
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
