package jetstream

import "time"

// waitAnswers waits until the dones the reader's side finished (expire,
// failAll) have run on the answers goroutine.
func waitAnswers(a *acker) {
	for {
		a.answers.mu.Lock()
		busy := a.answers.busy || len(a.answers.q) > 0
		a.answers.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
