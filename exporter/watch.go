package exporter

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/watch"
)

// trackedWatch passes a watch's events through and records progress.
type trackedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	done  chan struct{}
	stop  sync.Once
}

func (s *scope) track(w watch.Interface) watch.Interface {
	t := &trackedWatch{inner: w, out: make(chan watch.Event), done: make(chan struct{})}
	s.lastProgress.Store(time.Now().UnixNano())
	s.watchMu.Lock()
	s.watch = t
	s.watchMu.Unlock()
	go func() {
		defer close(t.out)
		for ev := range w.ResultChan() {
			s.lastProgress.Store(time.Now().UnixNano())
			select {
			case t.out <- ev:
			case <-t.done:
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
