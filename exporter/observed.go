package exporter

import (
	"sync"
	"time"
)

// observer is the Observer of one key: when kubefeed first observed a
// version of its object. What the observations do not know yet is
// observed now.
type observer struct {
	o  *observations
	it item
}

// At is when (uid, rv) was first observed; deleted asks for the version's
// deletion, which is observed apart from the version itself (an inferred
// deletion names the last delivered version).
func (ob observer) At(uid, rv string, deleted bool) time.Time {
	return ob.o.observe(ob.it, uid, rv, deleted, ob.o.now())
}

// observation is one version of a key's object and when it was first
// observed.
type observation struct {
	uid, rv string
	deleted bool
	at      int64 // unix nanos
	// touched is when the entry was made, for pruning.
	touched int64
	// sticky: restored, and its key not yet seen pending (prune).
	sticky bool
}

// observationsPerKey bounds what is kept of one key: the versions that
// sinks may still render at once (a lagging informer's, an incarnation
// being retracted while its successor is added, a deletion). A lagging
// informer of an overlapping scope notes the versions the other one noted
// long before; past the bound, the oldest go, and a version noted again
// later gets another time.
const observationsPerKey = 64

// observations holds, for keys that some sink may still render, when each
// of their recent versions was first observed: by a handler (the watch
// notification), by a worker that saw a version before its handler ran or
// inferred a deletion, or by a restored checkpoint record written before
// its change was sent. The first observation of a version wins, and a
// restored one replaces any other (it is what a sink holds). Entries go once no sink has their key pending (prune).
type observations struct {
	shards [64]obsShard
	now    func() time.Time
}

type obsShard struct {
	mu sync.Mutex
	m  map[item][]observation
}

func newObservations(now func() time.Time) *observations {
	o := &observations{now: now}
	for i := range o.shards {
		o.shards[i].m = map[item][]observation{}
	}
	return o
}

func (o *observations) shard(it item) *obsShard {
	// FNV-1a over the name and namespace: cheap, and spreads keys of one
	// namespace.
	h := uint32(2166136261)
	for i := 0; i < len(it.name); i++ {
		h = (h ^ uint32(it.name[i])) * 16777619
	}
	for i := 0; i < len(it.namespace); i++ {
		h = (h ^ uint32(it.namespace[i])) * 16777619
	}
	return &o.shards[h%uint32(len(o.shards))]
}

// observe notes that (uid, rv, deleted) of it was observed at t, unless an
// observation of it is known, and returns the time that stands: the first
// one noted, which a sink may have sent already.
func (o *observations) observe(it item, uid, rv string, deleted bool, t time.Time) time.Time {
	return o.note(it, uid, rv, deleted, t, false)
}

// restored notes a time a previous run sent (Record.Sent): it predates
// anything this run observed, and is kept until the key is seen live (a
// scope that appears late, a list that takes long), or an hour.
func (o *observations) restored(it item, uid, rv string, deleted bool, t time.Time) {
	o.note(it, uid, rv, deleted, t, true)
}

func (o *observations) note(it item, uid, rv string, deleted bool, t time.Time, restored bool) time.Time {
	s := o.shard(it)
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.m[it]
	if !restored {
		// The key is seen live: what was restored for it is pruned as
		// any observation is from now on.
		for i := range list {
			list[i].sticky = false
		}
	}
	for i := range list {
		e := &list[i]
		if e.uid == uid && e.rv == rv && e.deleted == deleted {
			if restored {
				// What a sink was sent stands, earlier or not: a warm
				// standby may have seen the version before the leader that
				// sent it did.
				e.at, e.sticky = t.UnixNano(), true
			}
			if !restored {
				e.touched = o.now().UnixNano()
			}
			return time.Unix(0, e.at).UTC()
		}
	}
	e := observation{uid: uid, rv: rv, deleted: deleted, at: t.UnixNano(), touched: o.now().UnixNano(), sticky: restored}
	if len(list) >= observationsPerKey {
		copy(list, list[1:])
		list[len(list)-1] = e
	} else {
		list = append(list, e)
	}
	s.m[it] = list
	return time.Unix(0, e.at).UTC()
}

// forKey is the observer of one key.
func (o *observations) forKey(it item) observer { return observer{o: o, it: it} }

// prune drops the observations of keys that no sink has pending, once
// they are older than minAge (an entry made by a handler just before it
// queued the key, or seeded by a restore before the key was queued, is
// kept).
//
// A restored entry (sticky) is kept until its key is seen live, or for
// restoredFor: its key is queued only once its scope lists, which may be
// much later (a CRD installed late).
func (o *observations) prune(pendingAnywhere func(item) bool, minAge time.Duration) {
	now := o.now()
	cut, stickyCut := now.Add(-minAge).UnixNano(), now.Add(-restoredFor).UnixNano()
	for i := range o.shards {
		s := &o.shards[i]
		s.mu.Lock()
		for it, list := range s.m {
			if pendingAnywhere(it) {
				for j := range list {
					list[j].sticky = false
				}
				continue
			}
			keep := false
			for _, e := range list {
				keep = keep || e.touched > cut || (e.sticky && e.touched > stickyCut)
			}
			if !keep {
				delete(s.m, it)
			}
		}
		s.mu.Unlock()
	}
}

// restoredFor bounds how long a restored time waits for its key.
const restoredFor = time.Hour

func (o *observations) len() int {
	n := 0
	for i := range o.shards {
		s := &o.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
