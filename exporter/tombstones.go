package exporter

import (
	"sync"

	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// tombstones keeps the final state of deleted objects until no sink needs it.
type tombstones struct {
	mu sync.Mutex
	m  map[state.Key]plan.Tombstone
}

func (t *tombstones) put(k state.Key, ts plan.Tombstone) {
	t.mu.Lock()
	t.m[k] = ts
	t.mu.Unlock()
}

func (t *tombstones) get(k state.Key) *plan.Tombstone {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts, ok := t.m[k]
	if !ok {
		return nil
	}
	// The copy escapes; declared here, it is made only for a key that has
	// a tombstone (most have none), not on every lookup.
	found := ts
	return &found
}

// prune drops tombstones that no sink needs: none has a delivered record
// of that incarnation, and none has the key waiting or in flight (an added
// event still awaiting its ack needs the final state for the deletion that
// follows).
func (t *tombstones) prune(runners []*sinkRunner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, ts := range t.m {
		needed := false
		for _, r := range runners {
			if rec, ok := r.store.Get(k); ok && rec.UID == string(ts.Obj.GetUID()) || r.pending.has(keyItem(k)) {
				needed = true
				break
			}
		}
		if !needed {
			delete(t.m, k)
		}
	}
}
