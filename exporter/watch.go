package exporter

import (
	"sync"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

// trackedWatch passes a watch's events through and records progress; a
// watch-list stream's objects are also recorded as a list cycle's until
// its end bookmark.
type trackedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	done  chan struct{}
	stop  sync.Once
}

// track wraps w; cycle, when not 0, is the list cycle w streams (a watch
// with sendInitialEvents).
func (s *scope) track(w watch.Interface, cycle uint64) watch.Interface {
	t := &trackedWatch{inner: w, out: make(chan watch.Event), done: make(chan struct{})}
	s.lastProgress.Store(time.Now().UnixNano())
	s.watchMu.Lock()
	s.watch = t
	s.watchMu.Unlock()
	go func() {
		defer close(t.out)
		for ev := range w.ResultChan() {
			s.lastProgress.Store(time.Now().UnixNano())
			if s.outOfShard(ev) {
				continue
			}
			var end *streamEnd
			if cycle != 0 {
				end = s.streamed(cycle, ev)
			}
			select {
			case t.out <- ev:
				if end != nil {
					cycle = 0 // the initial events ended; later ones are changes
					s.listEnded(end.relisted, end.n)
				}
			case <-t.done:
				if end != nil {
					end.undo() // the reflector never got the end bookmark
				}
				return
			}
		}
	}()
	return t
}

func (t *trackedWatch) ResultChan() <-chan watch.Event { return t.out }
func (t *trackedWatch) Stop() {
	t.stop.Do(func() {
		close(t.done)
		t.inner.Stop()
	})
}

// restartStalledWatch stops the current watch when it has delivered nothing
// (no event, no bookmark) for longer than timeout; the reflector then
// watches again from its last resourceVersion. It reports whether it did.
func (s *scope) restartStalledWatch(timeout time.Duration) bool {
	s.watchMu.Lock()
	w := s.watch
	s.watchMu.Unlock()
	if w == nil || time.Since(time.Unix(0, s.lastProgress.Load())) < timeout {
		return false
	}
	s.log.Warn("watch made no progress; restarting it", zap.Duration("timeout", timeout))
	s.lastProgress.Store(time.Now().UnixNano())
	w.Stop()
	return true
}

// streamEnd is the end of a watch-list stream's initial events, as
// listCycles.endStream reported it.
type streamEnd struct {
	relisted bool
	n        int
	undo     func()
}

// streamed records one event of watch-list cycle gen, before the reflector
// sees it; it returns the end of the initial events when the event is the
// bookmark annotated k8s.io/initial-events-end, which completes the cycle
// before the reflector replaces its store with what was streamed.
func (s *scope) streamed(gen uint64, ev watch.Event) *streamEnd {
	u, ok := ev.Object.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	switch ev.Type {
	case watch.Added:
		s.lists.listed(gen, s.keyOf(u), u.GetResourceVersion())
	case watch.Modified:
		s.lists.changedWhileListed(gen, s.keyOf(u), u.GetResourceVersion())
	case watch.Deleted:
		s.lists.listed(gen, s.keyOf(u), "")
	case watch.Bookmark:
		if u.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
			relisted, n, undo := s.lists.endStream(gen, u.GetResourceVersion(), s.newGap(gapRelist))
			return &streamEnd{relisted: relisted, n: n, undo: undo}
		}
	}
	return nil
}
