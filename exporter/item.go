package exporter

// item is one unit of work in a sink's queue: an object key, or an eager gap
// marker (sent even when no change of its scope follows). Items are
// comparable, so the workqueue de-duplicates them and never hands one to
// two workers at once.
type item struct {
	key Key
	// gap, when set, names an eager gap marker by its id; key is then zero.
	gap string
}

func keyItem(k Key) item { return item{key: k} }

func gapItem(g *gap) item { return item{gap: g.ev.ID} }

func (it item) String() string {
	if it.gap != "" {
		return "gap " + it.gap
	}
	return it.key.String()
}
