package app

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// renewLock is a Lease lock that remembers when this replica last wrote
// the Lease as its holder. The leader fences its sends on it: client-go's
// elector ends the leading context only after it tried to release the
// Lease, which against an unreachable API server takes up to another
// renewDeadline, by when another replica may hold the Lease.
type renewLock struct {
	resourcelock.Interface
	now func() time.Time

	mu      sync.Mutex
	renewed time.Time
}

var _ resourcelock.Interface = (*renewLock)(nil)

// Create acquires a Lease that did not exist.
func (l *renewLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := l.now()
	if err := l.Interface.Create(ctx, r); err != nil {
		return err
	}
	l.record(r, start)
	return nil
}

// Update acquires, renews or releases the Lease.
func (l *renewLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := l.now()
	if err := l.Interface.Update(ctx, r); err != nil {
		return err
	}
	l.record(r, start)
	return nil
}

// record notes a successful write that made or kept this replica the
// holder. It counts from when the write started: others count the Lease's
// duration from when they saw the write, which is later.
func (l *renewLock) record(r resourcelock.LeaderElectionRecord, start time.Time) {
	if r.HolderIdentity != l.Identity() {
		return // a release
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if start.After(l.renewed) {
		l.renewed = start
	}
}

// lastRenewal is when the last successful write as the holder started;
// zero before the first.
func (l *renewLock) lastRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}
