package jetstream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Reading the acks costs little; waking a goroutine for each costs more
// than all the rest of a publish (on a busy 2-core machine tens of µs of
// CPU per wake-up). So the acks land in a channel, which no goroutine
// waits on while publishes keep coming: each Publish reads what arrived
// since the last one, and the reader goroutine only checks every
// busyPoll. When publishes are further apart than busyGap, or pause, the
// reader waits on the channel itself and takes each ack as it comes, so
// that at a low rate no ack waits for the poll. busyGap is well below the
// 2 ms between changes at 500/s, whose p99 latency must not carry the
// poll (a 2 ms gap with a 5 ms poll gave p99 18 ms against 7 ms at 250/s).
const (
	busyGap  = 500 * time.Microsecond
	busyPoll = 2 * time.Millisecond
	// drainMax bounds the acks one Publish reads, so that a worker
	// returns to its own work.
	drainMax = 256
)

// drain reads the acks that arrived, at most max; inline as for onAck.
func (a *acker) drain(max int, inline bool) {
	for i := 0; i < max; i++ {
		select {
		case m := <-a.in:
			a.onAck(m, inline)
		default:
			return
		}
	}
}

func (a *acker) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.table)
}

// start runs the reader: acks (see above), the timeout ticker, and the
// failure of what is outstanding when status reports a lost connection,
// until halt.
func (a *acker) start(status <-chan nats.Status) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		expiry := time.NewTicker(max(a.timeout/8, time.Millisecond))
		defer expiry.Stop()
		poll := time.NewTimer(busyPoll)
		defer poll.Stop()
		for {
			a.drain(len(a.in)+1, false)
			var in <-chan *nats.Msg
			var polled <-chan time.Time
			switch {
			case a.waiting() == 0:
				// Nothing to wait for until a publish kicks.
			case a.lastGap.Load() < int64(busyGap) && time.Now().UnixNano()-a.lastPub.Load() < int64(busyGap):
				poll.Reset(busyPoll)
				polled = poll.C
			default:
				in = a.in
			}
			select {
			case <-a.stop:
				return
			case <-a.kick:
			case m := <-in:
				a.onAck(m, false)
			case <-polled:
			case now := <-expiry.C:
				a.expire(now)
			case st, ok := <-status:
				if !ok {
					status = nil
					continue
				}
				a.drain(len(a.in), false) // acks that made it before the loss count
				a.failAll(fmt.Errorf("publish: the connection was lost (%s) before the ack: %w", st, nats.ErrDisconnected))
			}
		}
	}()
}

func (a *acker) halt() {
	close(a.stop)
	a.wg.Wait()
}
