package exporter

import (
	"unique"

	"github.com/kubefeed/kubefeed/exporter/state"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// item is one unit of work in a sink's queue: an object key, or an eager gap
// marker (sent even when no change of its scope follows). Items are
// comparable, so the workqueue de-duplicates them and never hands one to
// two workers at once.
//
// The queue hashes and compares an item several times per change (its
// dirty and processing sets), so an item holds its key's resource as one
// interned handle (unique.Make) rather than three strings: two items of one
// key always hold the same handle.
type item struct {
	gvr             unique.Handle[schema.GroupVersionResource] // zero for a gap marker
	namespace, name string
	// gap, when set, names an eager gap marker by its id; the key is then
	// zero.
	gap string
}

func keyItem(k state.Key) item {
	return item{gvr: unique.Make(k.GVR), namespace: k.Namespace, name: k.Name}
}

func gapItem(g *gap) item { return item{gap: g.ev.ID} }

// key is the object key of a key item (zero for a gap marker).
func (it item) key() state.Key {
	if it.gvr == (unique.Handle[schema.GroupVersionResource]{}) {
		return state.Key{}
	}
	return state.Key{GVR: it.gvr.Value(), Namespace: it.namespace, Name: it.name}
}

func (it item) String() string {
	if it.gap != "" {
		return "gap " + it.gap
	}
	return it.key().String()
}
