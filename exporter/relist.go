package exporter

import (
	"sync"

	"github.com/kubefeed/kubefeed/exporter/state"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// listCycles tells the reflector's initial list from its relists. A list
// cycle is either a paged List (the reflector's pager calls List once per
// page: a cycle starts with a request without a continue token and ends
// with a page that has none) or a watch-list stream (a watch request with
// sendInitialEvents: the objects arrive as ADDED events and the cycle ends
// with the bookmark annotated k8s.io/initial-events-end). The first cycle
// to complete is the initial list; every cycle that starts after one
// completed is a relist, whose items arrive as recovered changes. A cycle
// abandoned half-way (an error, an expired continue token, a stream that
// broke before its bookmark) is simply started again: a new cycle
// supersedes it, and what the old one still reports is ignored.
type listCycles struct {
	mu        sync.Mutex
	completed int
	gen       uint64               // the current cycle; 0: none is open
	next      uint64               // the last generation handed out
	inRelist  bool                 // the current cycle is a relist
	listedN   int                  // objects the current cycle listed so far
	items     map[state.Key]string // what the current relist cycle listed so far
	// The last completed relist: key -> resourceVersion, consumed by the
	// handlers as the informer replays it; and its gap marker.
	relisted map[state.Key]string
	gap      *gap
	// listedRV is the resourceVersion of the last completed cycle (its
	// last page's, or its end bookmark's), known before the reflector
	// replaces its store: the version a cache that applied it reached.
	listedRV string
}

// begin opens a new cycle and returns its generation.
func (c *listCycles) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	c.gen = c.next
	c.inRelist = c.completed > 0
	c.listedN = 0
	c.items = nil
	if c.inRelist {
		c.items = map[state.Key]string{}
	}
	return c.gen
}

// listed records an object of cycle gen (rv "" forgets k: a deletion seen
// in a watch-list stream before its end).
func (c *listCycles) listed(gen uint64, k state.Key, rv string) {
	d := 1
	if rv == "" {
		d = -1
	}
	c.record(gen, k, rv, d)
}

// changedWhileListed records a change of an object a watch-list stream
// already listed (a MODIFIED before its end): its new version, not one more
// object.
func (c *listCycles) changedWhileListed(gen uint64, k state.Key, rv string) { c.record(gen, k, rv, 0) }

// record is listed with d added to the cycle's count of objects.
func (c *listCycles) record(gen uint64, k state.Key, rv string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.listedN += d
	if !c.inRelist {
		return
	}
	if rv == "" {
		delete(c.items, k)
		return
	}
	c.items[k] = rv
}

// end completes cycle gen; it reports whether a relist just completed,
// and how many objects the cycle listed. Ending a superseded cycle does
// nothing.
func (c *listCycles) end(gen uint64, rv string, newGap func() *gap) (relisted bool, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return false, 0
	}
	return c.endLocked(rv, newGap)
}

// endStream is end for a watch-list stream, whose end bookmark is seen
// before the reflector gets it: undo takes the end back when the
// bookmark never reaches the reflector (its watch was stopped
// meanwhile), so the stream the reflector opens instead is still the
// list it was (the first list stays no relist). Nothing else changes the
// cycles in between: the reflector opens a cycle only after the watch
// closed.
func (c *listCycles) endStream(gen uint64, rv string, newGap func() *gap) (relisted bool, n int, undo func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return false, 0, func() {}
	}
	inRelist, items, prevRelisted, prevGap, prevRV := c.inRelist, c.items, c.relisted, c.gap, c.listedRV
	relisted, n = c.endLocked(rv, newGap)
	return relisted, n, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.gen, c.inRelist, c.items, c.relisted, c.gap, c.listedRV = gen, inRelist, items, prevRelisted, prevGap, prevRV
		c.completed--
	}
}

// endLocked completes the current cycle, listed at rv; c.mu is held.
func (c *listCycles) endLocked(rv string, newGap func() *gap) (relisted bool, n int) {
	c.gen = 0
	c.completed++
	c.listedRV = rv
	if !c.inRelist {
		return false, max(c.listedN, 0)
	}
	c.relisted, c.gap = c.items, newGap()
	c.items, c.inRelist = nil, false
	return true, len(c.relisted)
}

// page records one List response; it reports whether a relist just
// completed, and how many objects the completed cycle listed.
func (c *listCycles) page(opts metav1.ListOptions, l *unstructured.UnstructuredList, keyOf func(*unstructured.Unstructured) state.Key, newGap func() *gap) (relisted bool, n int) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	if opts.Continue == "" || gen == 0 { // a continued page of a cycle we did not see start opens one
		gen = c.begin()
	}
	for i := range l.Items {
		it := &l.Items[i]
		c.listed(gen, keyOf(it), it.GetResourceVersion())
	}
	if l.GetContinue() != "" {
		return false, 0
	}
	return c.end(gen, l.GetResourceVersion(), newGap)
}

// lastListedRV is the resourceVersion of the last completed cycle.
func (c *listCycles) lastListedRV() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listedRV
}

// recoveredBy returns the relist's gap when a notification comes from the
// last relist (same key and resourceVersion); each key is consumed once.
func (c *listCycles) recoveredBy(k state.Key, rv string) *gap {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.relisted == nil {
		return nil
	}
	if have, ok := c.relisted[k]; ok && have == rv {
		delete(c.relisted, k)
		return c.gap
	}
	return nil
}

// deletionGap is the gap of a deletion seen only through a relist.
func (c *listCycles) deletionGap(newGap func() *gap) *gap {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gap == nil {
		c.gap = newGap()
	}
	return c.gap
}
