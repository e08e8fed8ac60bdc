package exporter

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

// Sharding (Options.Shard): every list and watch of a scope carries the
// shard's shardSelector. An API server with ShardedListAndWatch sends only
// the shard's objects; one without it ignores the field and sends all,
// and the scope drops the others here, before the informer sees them, by
// the same hash (FNV-1a of metadata.uid). A uid never changes, so an
// object never moves between shards: dropping by uid is exact for lists,
// adds, updates and deletes alike.

// dropOutOfShard removes from a list page the objects of other shards.
func (s *scope) dropOutOfShard(l *unstructured.UnstructuredList) {
	if s.sh == nil || s.sh.shard == nil {
		return
	}
	sh := s.sh.shard
	kept := l.Items[:0]
	dropped := 0
	for i := range l.Items {
		if sh.Has(string(l.Items[i].GetUID())) {
			kept = append(kept, l.Items[i])
		} else {
			dropped++
		}
	}
	clear(l.Items[len(kept):])
	l.Items = kept
	s.countOutOfShard(dropped)
}

// outOfShard reports whether a watch event is of an object of another
// shard (bookmarks and errors are not).
func (s *scope) outOfShard(ev watch.Event) bool {
	if s.sh == nil || s.sh.shard == nil {
		return false
	}
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted:
	default:
		return false
	}
	sh := s.sh.shard
	u, ok := ev.Object.(*unstructured.Unstructured)
	if !ok || sh.Has(string(u.GetUID())) {
		return false
	}
	s.countOutOfShard(1)
	return true
}

func (s *scope) countOutOfShard(n int) {
	if n == 0 {
		return
	}
	s.sh.outOfShard.Add(int64(n))
	s.sh.metrics.outOfShard.WithLabelValues(resourceLabel(s.res)).Add(float64(n))
}

// OutOfShard counts the objects received outside Options.Shard and
// dropped: 0 while the API server applies the shard selector.
func (e *Exporter) OutOfShard() int64 { return e.outOfShard.Load() }
