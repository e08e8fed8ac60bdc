package exporter

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
)

// Items of one key are equal (the queue de-duplicates them) whatever
// GroupVersionResource value they were made from, also when made
// concurrently; items of different keys, or a key and a gap marker, are
// not; and an item gives its key back whole, '/' and '~' included.
func TestItemIdentity(t *testing.T) {
	k := Key{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, Namespace: "a", Name: "x/y~0"}
	k2 := k
	grp := []byte("example.com")
	k2.GVR.Group = string(grp) // another copy of the strings
	if keyItem(k) != keyItem(k2) {
		t.Fatal("two items of one key differ")
	}
	if got := keyItem(k).key(); got != k {
		t.Fatalf("key() = %v, want %v", got, k)
	}
	for _, other := range []Key{
		{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v2", Resource: "widgets"}, Namespace: "a", Name: "x/y~0"},
		{GVR: k.GVR, Namespace: "a/x", Name: "y~0"},
		{GVR: k.GVR, Name: "x/y~0"},
	} {
		if keyItem(other) == keyItem(k) {
			t.Fatalf("items of %v and %v are equal", other, k)
		}
	}
	g := gapItem(&gap{ev: &event.Event{ID: "id-1"}})
	if g == keyItem(Key{}) || g.key() != (Key{}) {
		t.Fatalf("a gap item %+v is taken for a key", g)
	}
	// First use of a resource from many goroutines at once: one pointer.
	// (A resource new to this process in every run: the intern table is
	// the process's, and -count runs the test again.)
	fresh := schema.GroupVersionResource{Group: "race.example.com", Version: "v1", Resource: "things" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	items := make([]item, 16)
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		go func() { defer wg.Done(); items[i] = keyItem(Key{GVR: fresh, Name: "n"}) }()
	}
	wg.Wait()
	for _, it := range items[1:] {
		if it != items[0] {
			t.Fatal("concurrent first uses of a resource interned it twice")
		}
	}
}
