package exporter

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// Items of one key are equal (the queue de-duplicates them) whatever
// GroupVersionResource value they were made from, also when made
// concurrently; items of different keys, or a key and a gap marker, are
// not; and an item gives its key back whole, '/' and '~' included.
func TestItemIdentity(t *testing.T) {
	k := state.Key{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, Namespace: "a", Name: "x/y~0"}
	k2 := k
	grp := []byte("example.com")
	k2.GVR.Group = string(grp) // another copy of the strings
	if keyItem(k) != keyItem(k2) {
		t.Fatal("two items of one key differ")
	}
	if got := keyItem(k).key(); got != k {
		t.Fatalf("key() = %v, want %v", got, k)
	}
	for _, other := range []state.Key{
		{GVR: schema.GroupVersionResource{Group: "example.com", Version: "v2", Resource: "widgets"}, Namespace: "a", Name: "x/y~0"},
		{GVR: k.GVR, Namespace: "a/x", Name: "y~0"},
		{GVR: k.GVR, Name: "x/y~0"},
	} {
		if keyItem(other) == keyItem(k) {
			t.Fatalf("items of %v and %v are equal", other, k)
		}
	}
	g := gapItem(&gap{ev: &event.Event{ID: "id-1"}})
	if g == keyItem(state.Key{}) || g.key() != (state.Key{}) {
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
		go func() { defer wg.Done(); items[i] = keyItem(state.Key{GVR: fresh, Name: "n"}) }()
	}
	wg.Wait()
	for _, it := range items[1:] {
		if it != items[0] {
			t.Fatal("concurrent first uses of a resource interned it twice")
		}
	}
}

// oddKeys are keys that differ only where a '/' or '~' falls, in the
// group ("apps" vs ""), or in the version (v1 vs v1beta1), with the same
// names; and a GVR whose fields themselves hold '/'.
func oddKeys() []state.Key {
	core := schema.GroupVersionResource{Version: "v1", Resource: "deployments"}
	apps := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	appsBeta := schema.GroupVersionResource{Group: "apps", Version: "v1beta1", Resource: "deployments"}
	slashA := schema.GroupVersionResource{Group: "a/b", Version: "c", Resource: "d"}
	slashB := schema.GroupVersionResource{Group: "a", Version: "b/c", Resource: "d"}
	var ks []state.Key
	for _, gvr := range []schema.GroupVersionResource{core, apps, appsBeta, slashA, slashB} {
		ks = append(ks,
			state.Key{GVR: gvr, Namespace: "ns", Name: "web"},
			state.Key{GVR: gvr, Namespace: "ns/web", Name: ""},
			state.Key{GVR: gvr, Namespace: "", Name: "ns/web"},
			state.Key{GVR: gvr, Namespace: "a/b", Name: "c"},
			state.Key{GVR: gvr, Namespace: "a", Name: "b/c"},
			state.Key{GVR: gvr, Namespace: "x", Name: "~1"},
			state.Key{GVR: gvr, Namespace: "x", Name: "/"},
			state.Key{GVR: gvr, Namespace: "x~0", Name: "y"},
			state.Key{GVR: gvr, Namespace: "", Name: ""},
		)
	}
	return ks
}

// freshRuns makes the resources a test uses for first uses new in
// every run (-count=2): the intern table is the process's.
var freshRuns atomic.Int64

// cloneKey copies every string of k, so that an item made from it shares
// no memory with one made from k.
func cloneKey(k state.Key) state.Key {
	return state.Key{
		GVR:       schema.GroupVersionResource{Group: strings.Clone(k.GVR.Group), Version: strings.Clone(k.GVR.Version), Resource: strings.Clone(k.GVR.Resource)},
		Namespace: strings.Clone(k.Namespace),
		Name:      strings.Clone(k.Name),
	}
}

// Items are equal exactly when their keys are, over keys that differ
// only in group, version or where '/' and '~' fall; an item gives its key
// (and its old String) back; a gap item is never a key item, even one
// whose id reads like a key.
func TestItemEqualityMatchesKeyEquality(t *testing.T) {
	ks := oddKeys()
	for i, a := range ks {
		ia := keyItem(a)
		if got := ia.key(); got != a {
			t.Fatalf("keyItem(%#v).key() = %#v", a, got)
		}
		if ia.String() != a.String() {
			t.Fatalf("item String %q, key String %q", ia.String(), a.String())
		}
		if keyItem(cloneKey(a)) != ia {
			t.Fatalf("items of copies of %#v differ", a)
		}
		for j, b := range ks {
			if (keyItem(b) == ia) != (i == j) {
				t.Fatalf("keyItem(%#v) == keyItem(%#v) is %v", a, b, i != j)
			}
		}
		for _, id := range []string{a.String(), a.Name, a.GVR.String()} {
			if id == "" {
				continue
			}
			g := gapItem(&gap{ev: &event.Event{ID: id}})
			if g == ia || g.key() != (state.Key{}) {
				t.Fatalf("gap item %q taken for the key %#v", id, a)
			}
		}
	}
}

// The rate limiter the runner uses counts and backs off per key, not per
// item value made: requeues of one key through different copies add up,
// a key of the same name in another group or version has its own count,
// and Forget through a copy resets it.
func TestRateLimiterPerKey(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[item](retryBase, RetryCap),
		workqueue.TypedRateLimitingQueueConfig[item]{})
	defer q.ShutDown()
	ks := oddKeys()
	rl := workqueue.NewTypedItemExponentialFailureRateLimiter[item](time.Millisecond, time.Hour)
	for i, k := range ks {
		for n := 0; n <= i%4; n++ {
			q.AddRateLimited(keyItem(cloneKey(k)))
			rl.When(keyItem(cloneKey(k)))
		}
	}
	for i, k := range ks {
		if got, want := q.NumRequeues(keyItem(cloneKey(k))), i%4+1; got != want {
			t.Fatalf("NumRequeues(%v) = %d, want %d", k, got, want)
		}
		if got, want := rl.When(keyItem(cloneKey(k))), time.Millisecond<<(i%4+1); got != want {
			t.Fatalf("backoff of %v = %v, want %v", k, got, want)
		}
	}
	q.Forget(keyItem(cloneKey(ks[1])))
	if q.NumRequeues(keyItem(ks[1])) != 0 || q.NumRequeues(keyItem(ks[0])) != 1 {
		t.Fatalf("Forget of one key: requeues %d and %d, want 0 and 1", q.NumRequeues(keyItem(ks[1])), q.NumRequeues(keyItem(ks[0])))
	}
}

// While a key is processing, adding it again (from other copies, and
// after a delay) does not hand it out; once Done it is handed out once.
func TestQueueHoldsAProcessingKey(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[item](retryBase, RetryCap),
		workqueue.TypedRateLimitingQueueConfig[item]{})
	defer q.ShutDown()
	ks := oddKeys()
	for _, k := range ks {
		q.Add(keyItem(k))
		q.Add(keyItem(cloneKey(k)))
	}
	if q.Len() != len(ks) {
		t.Fatalf("queue holds %d items for %d keys", q.Len(), len(ks))
	}
	var got []item
	for range ks {
		it, _ := q.Get()
		got = append(got, it)
	}
	for _, k := range ks {
		q.Add(keyItem(cloneKey(k)))
		q.AddAfter(keyItem(cloneKey(k)), -time.Second) // due: an Add
	}
	if q.Len() != 0 {
		t.Fatalf("%d items handed out while their keys are processing", q.Len())
	}
	for _, it := range got {
		q.Done(it)
	}
	if q.Len() != len(ks) {
		t.Fatalf("after Done the queue holds %d items, want %d", q.Len(), len(ks))
	}
}

// A model of the runner on the real workqueue: producers bump a key's
// version then queue it (from fresh copies of its strings, first uses of
// new resources racing), workers take an item, check that its key is not
// already in flight, deliver the latest version, and finish it. No key is
// ever in flight twice, a key's delivered versions never go back, and
// each key ends delivered at its last version (gap items too).
func TestQueueNeverHandsOutAKeyTwice(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[item](time.Microsecond, time.Millisecond),
		workqueue.TypedRateLimitingQueueConfig[item]{})
	ks := oddKeys()
	run := freshRuns.Add(1)
	for i := 0; i < 8; i++ { // resources no item was made for yet
		gvr := schema.GroupVersionResource{Group: fmt.Sprintf("fresh-%d-%d.example.com", run, i), Version: "v1", Resource: "things"}
		ks = append(ks, state.Key{GVR: gvr, Namespace: "ns", Name: "web"}, state.Key{GVR: gvr, Name: "ns/web"})
	}
	var (
		mu        sync.Mutex
		latest    = map[state.Key]int{}
		delivered = map[state.Key]int{}
		inflight  = map[state.Key]bool{}
		gaps      = map[string]int{}
		failures  []string
	)
	fail := func(format string, a ...any) {
		failures = append(failures, fmt.Sprintf(format, a...))
	}
	const producers, perProducer, workers = 4, 3000, 6
	var pw sync.WaitGroup
	for p := 0; p < producers; p++ {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for n := 0; n < perProducer; n++ {
				k := cloneKey(ks[(n*7+p*13)%len(ks)])
				mu.Lock()
				latest[k]++
				mu.Unlock()
				switch n % 5 {
				case 0:
					q.AddRateLimited(keyItem(k))
				case 1:
					q.AddAfter(keyItem(k), time.Microsecond)
				default:
					q.Add(keyItem(k))
				}
				if n%500 == 0 {
					q.Add(gapItem(&gap{ev: &event.Event{ID: fmt.Sprintf("gap-%d-%d", p, n)}}))
				}
			}
		}()
	}
	var ww sync.WaitGroup
	for w := 0; w < workers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for {
				it, quit := q.Get()
				if quit {
					return
				}
				mu.Lock()
				if it.gap != "" {
					gaps[it.gap]++
					mu.Unlock()
					q.Forget(it)
					q.Done(it)
					continue
				}
				k := it.key()
				if inflight[k] {
					fail("key %v handed out twice at once", k)
				}
				inflight[k] = true
				v := latest[k]
				if v < delivered[k] {
					fail("key %v delivered version %d after %d", k, v, delivered[k])
				}
				delivered[k] = v
				mu.Unlock()
				time.Sleep(time.Microsecond) // an in-flight window
				mu.Lock()
				inflight[k] = false
				mu.Unlock()
				q.Forget(it)
				q.Done(it)
			}
		}()
	}
	pw.Wait()
	// Delayed adds still waiting are dropped at shutdown: queue every key
	// once more, so that each ends delivered at its last version.
	for _, k := range ks {
		q.Add(keyItem(cloneKey(k)))
	}
	q.ShutDownWithDrain()
	ww.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures[:min(len(failures), 5)] {
		t.Error(f)
	}
	for k, v := range latest {
		if delivered[k] != v {
			t.Errorf("key %v ended delivered at %d, last version %d", k, delivered[k], v)
		}
	}
	if len(delivered) != len(latest) {
		t.Errorf("%d keys delivered, %d queued", len(delivered), len(latest))
	}
	if len(gaps) != producers*(perProducer/500) {
		t.Errorf("%d gap markers delivered, want %d", len(gaps), producers*(perProducer/500))
	}
}

// Items of one resource share one interned handle, whichever key, copy or
// goroutine made them: the queue compares one word, not three strings.
func TestItemsOfOneResourceShareOneHandle(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: fmt.Sprintf("intern-%d.example.com", freshRuns.Add(1)), Version: "v1", Resource: "widgets"}
	first := keyItem(state.Key{GVR: gvr, Namespace: "ns", Name: "n"}).gvr
	for i := 0; i < 5000; i++ {
		g := schema.GroupVersionResource{Group: string([]byte(gvr.Group)), Version: "v1", Resource: "widgets"} // another copy of the strings
		if it := keyItem(state.Key{GVR: g, Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("n-%d", i)}); it.gvr != first {
			t.Fatalf("key %d of one resource has another handle", i)
		}
	}
	other := keyItem(state.Key{GVR: schema.GroupVersionResource{Group: gvr.Group, Version: "v2", Resource: "widgets"}}).gvr
	if other == first {
		t.Fatal("another version of the resource shares its handle")
	}
}
