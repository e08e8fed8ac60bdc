package exporter

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// listCycles tells the reflector's initial list from its relists. The
// reflector's pager calls List once per page: a list cycle starts with a
// request without a continue token and ends with a page that has none. The
// first cycle to complete is the initial list; every cycle that starts
// after one completed is a relist, whose items (all pages) arrive as
// recovered changes. A cycle abandoned half-way (an error, an expired
// continue token) is simply started again.
type listCycles struct {
	mu        sync.Mutex
	completed int
	inRelist  bool           // the current cycle is a relist
	items     map[Key]string // what the current relist cycle listed so far
	// The last completed relist: key -> resourceVersion, consumed by the
	// handlers as the informer replays it; and its gap marker.
	relisted map[Key]string
	gap      *gap
}

// page records one List response; it reports whether a relist just
// completed, with how many objects it listed.
func (c *listCycles) page(opts metav1.ListOptions, l *unstructured.UnstructuredList, keyOf func(*unstructured.Unstructured) Key, newGap func() *gap) (relisted bool, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if opts.Continue == "" {
		c.inRelist = c.completed > 0
		c.items = nil
		if c.inRelist {
			c.items = make(map[Key]string, len(l.Items))
		}
	}
	if c.inRelist {
		if c.items == nil { // a continued page of a cycle we did not see start
			c.items = map[Key]string{}
		}
		for i := range l.Items {
			it := &l.Items[i]
			c.items[keyOf(it)] = it.GetResourceVersion()
		}
	}
	if l.GetContinue() != "" {
		return false, 0
	}
	c.completed++
	if !c.inRelist {
		return false, 0
	}
	c.relisted, c.gap = c.items, newGap()
	c.items, c.inRelist = nil, false
	return true, len(c.relisted)
}

// recoveredBy returns the relist's gap when a notification comes from the
// last relist (same key and resourceVersion); each key is consumed once.
func (c *listCycles) recoveredBy(k Key, rv string) *gap {
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
