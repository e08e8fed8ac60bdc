package exporter

import (
	"sync"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

// lateWatch is a watch whose Stop does not close its channel at once: a
// decoder may still hand over the event it had read (an HTTP watch's
// StreamWatcher races Stop against its send).
type lateWatch struct {
	ch   chan watch.Event
	once sync.Once
	stop chan struct{}
}

func (w *lateWatch) Stop() { w.once.Do(func() { close(w.stop) }) }

func (w *lateWatch) ResultChan() <-chan watch.Event { return w.ch }

// The stall watchdog stops a first-list stream just as its end bookmark
// arrives: when the bookmark does not reach the reflector, the reflector
// streams the first list again, and that must still be the first list
// (not a relist whose objects would be sent recovered after a gap
// marker). Each round is a coin toss between the reflector getting the
// bookmark and the stop; sixty rounds lose it at least once.
func TestBookmarkAfterStopDoesNotEndTheCycle(t *testing.T) {
	lost := 0
	for round := 0; round < 60; round++ {
		s := &scope{log: zap.NewNop()}
		gen := s.lists.begin()
		inner := &lateWatch{ch: make(chan watch.Event), stop: make(chan struct{})}
		tw := s.track(inner, gen)
		got := make(chan bool)
		go func() { // the reflector, reading until the watch closes
			seen := false
			for ev := range tw.ResultChan() {
				if u, ok := ev.Object.(*unstructured.Unstructured); ok && u.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
					seen = true
				}
			}
			got <- seen
		}()
		tw.Stop() // the watchdog
		inner.ch <- initialEnd(5)
		close(inner.ch)
		if <-got {
			continue // the reflector has its list
		}
		lost++
		s.lists.begin() // the reflector streams the first list again
		s.lists.mu.Lock()
		relist := s.lists.inRelist
		s.lists.mu.Unlock()
		if relist {
			t.Fatalf("round %d: a bookmark the reflector never got completed the first list; its retry is taken for a relist", round)
		}
	}
	if lost == 0 {
		t.Fatal("the stop never won; the case was not exercised")
	}
}
