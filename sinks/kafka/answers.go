package kafka

import "sync"

// answer is one outcome on its way to its done.
type answer struct {
	done func(error)
	err  error
}

// answers calls the publishes' dones on a goroutine of the sink, in the
// order they were answered. kgo runs every promise of the client on one
// goroutine that must never block; a done may take a while or even call
// Publish (which may wait for the window, that only promises free), so
// dones never run there.
type answers struct {
	mu      sync.Mutex
	queue   []answer
	wake    chan struct{} // capacity 1: a pending wake-up
	quit    chan struct{}
	stopped chan struct{}
	// called counts every done that returned (Close waits for them).
	called func()
}

func newAnswers(called func()) *answers {
	a := &answers{wake: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{}), called: called}
	go a.run()
	return a
}

// push queues done(err); it never blocks.
func (a *answers) push(done func(error), err error) {
	a.mu.Lock()
	a.queue = append(a.queue, answer{done: done, err: err})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *answers) run() {
	defer close(a.stopped)
	for {
		a.mu.Lock()
		q := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, x := range q {
			x.done(x.err)
			a.called()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-a.wake:
		case <-a.quit:
			a.mu.Lock()
			left := len(a.queue)
			a.mu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// stop ends the goroutine once the queue is empty. Nothing may be pushed
// after it.
func (a *answers) stop() {
	close(a.quit)
	<-a.stopped
}
