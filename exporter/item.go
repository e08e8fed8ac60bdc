package exporter

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// item is one unit of work in a sink's queue: an object key, or an eager gap
// marker (sent even when no change of its scope follows). Items are
// comparable, so the workqueue de-duplicates them and never hands one to
// two workers at once.
//
// The queue hashes and compares an item several times per change (its
// dirty and processing sets), so an item holds its key's resource as one
// interned pointer rather than three strings: two items of one key always
// hold the same pointer.
type item struct {
	gvr             *schema.GroupVersionResource // nil for a gap marker
	namespace, name string
	// gap, when set, names an eager gap marker by its id; the key is then
	// zero.
	gap string
}

// gvrs interns resources. It holds one entry per resource a sink ever
// queued, a handful. (A map under a lock, not a sync.Map: its key would be
// boxed, an allocation per lookup.)
var gvrs struct {
	sync.RWMutex
	m map[schema.GroupVersionResource]*schema.GroupVersionResource
}

func internGVR(gvr schema.GroupVersionResource) *schema.GroupVersionResource {
	gvrs.RLock()
	p := gvrs.m[gvr]
	gvrs.RUnlock()
	if p != nil {
		return p
	}
	gvrs.Lock()
	defer gvrs.Unlock()
	if p = gvrs.m[gvr]; p == nil {
		if gvrs.m == nil {
			gvrs.m = map[schema.GroupVersionResource]*schema.GroupVersionResource{}
		}
		p = new(schema.GroupVersionResource) // not &gvr: that would move every caller's gvr to the heap
		*p = gvr
		gvrs.m[gvr] = p
	}
	return p
}

func keyItem(k Key) item {
	return item{gvr: internGVR(k.GVR), namespace: k.Namespace, name: k.Name}
}

func gapItem(g *gap) item { return item{gap: g.ev.ID} }

// key is the object key of a key item (zero for a gap marker).
func (it item) key() Key {
	if it.gvr == nil {
		return Key{}
	}
	return Key{GVR: *it.gvr, Namespace: it.namespace, Name: it.name}
}

func (it item) String() string {
	if it.gap != "" {
		return "gap " + it.gap
	}
	return it.key().String()
}
