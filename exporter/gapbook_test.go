package exporter

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
)

// The ids of sent gap markers are remembered for an hour, not forever.
func TestGapBookForgetsOldMarkers(t *testing.T) {
	b := newGapBook()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		b.markSent(&gap{ev: &event.Event{ID: fmt.Sprintf("g%d", i)}}, start)
	}
	if !b.markSent(&gap{ev: &event.Event{ID: "late"}}, start.Add(2*gapMemory)) {
		t.Fatal("a new marker was taken as sent")
	}
	if n := len(b.sent); n != 1 {
		t.Fatalf("%d marker ids remembered after two hours, want 1", n)
	}
	if b.isSent(&gap{ev: &event.Event{ID: "g1"}}) {
		t.Error("an hour-old marker id is still remembered")
	}
}
