package sinks

import (
	"context"
	"sync"
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
