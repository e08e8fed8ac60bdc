package exporter

import "sync"

// tombstones keeps the final state of deleted objects until no sink needs it.
type tombstones struct {
	mu sync.Mutex
	m  map[Key]tombstone
}

func (t *tombstones) put(k Key, ts tombstone) {
	t.mu.Lock()
	t.m[k] = ts
	t.mu.Unlock()
}

func (t *tombstones) get(k Key) *tombstone {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ts, ok := t.m[k]; ok {
		return &ts
	}
	return nil
}

// prune drops tombstones that no sink's delivered state refers to.
func (t *tombstones) prune(stores []Store) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, ts := range t.m {
		needed := false
		for _, st := range stores {
			if r, ok := st.Get(k); ok && r.UID == string(ts.obj.GetUID()) {
				needed = true
				break
			}
		}
		if !needed {
			delete(t.m, k)
		}
	}
}
