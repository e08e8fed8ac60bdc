package exporter

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// wlSource is a fakeSource whose watch-list streams a test can rewrite:
// script, when set, gets the initial events of the n-th stream (1-based:
// every ADDED event and the end bookmark) and returns the events to send
// instead, and whether the watch then ends (closed, as a broken
// connection does). A stream it leaves open without its bookmark stalls.
type wlSource struct {
	*fakeSource
	script func(n int, evs []watch.Event) (out []watch.Event, end bool)
	n      int // streams opened; guarded by fakeSource.mu
}

func newWLSource(pageSize int) *wlSource { return &wlSource{fakeSource: newFakeSource(pageSize)} }

func (s *wlSource) client(gvr schema.GroupVersionResource, ns string) resourceClient {
	return &wlClient{fakeClient: &fakeClient{f: s.fakeSource, gvr: gvr, ns: ns}, s: s}
}

type wlClient struct {
	*fakeClient
	s *wlSource
}

func (c *wlClient) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := c.fakeClient.Watch(ctx, o)
	if err != nil || o.SendInitialEvents == nil || !*o.SendInitialEvents {
		return w, err
	}
	fw := w.(*fakeWatch)
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	c.s.n++
	if c.s.script == nil {
		return w, nil
	}
	// The fake filled the buffer with the initial events (and whatever
	// changed since); nothing else reads it yet.
	var evs []watch.Event
	for len(fw.ch) > 0 {
		evs = append(evs, <-fw.ch)
	}
	out, end := c.s.script(c.s.n, evs)
	for _, ev := range out {
		fw.send(ev)
	}
	if end {
		fw.Stop()
	}
	return w, nil
}

// streamsOpened is how many watch-list requests the source served.
func (s *wlSource) streamsOpened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// initialEnd is the bookmark that ends a stream's initial events.
func initialEnd(rv int) watch.Event {
	bm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Bookmark"}}
	bm.SetResourceVersion(strconv.Itoa(rv))
	bm.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	return watch.Event{Type: watch.Bookmark, Object: bm}
}

// plainBookmark is a bookmark without the initial-events-end annotation.
func plainBookmark(rv int) watch.Event {
	bm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Bookmark"}}
	bm.SetResourceVersion(strconv.Itoa(rv))
	return watch.Event{Type: watch.Bookmark, Object: bm}
}

func goneEvent() watch.Event {
	st := apierrors.NewResourceExpired("too old resource version").Status()
	return watch.Event{Type: watch.Error, Object: &st}
}

// startWLHarness is startHarness over a wlSource.
func startWLHarness(t *testing.T, cfg *config.Config, src *wlSource, stores map[string]state.Store, sink sinks.Sink) *harness {
	t.Helper()
	h := &harness{t: t, src: src.fakeSource, sinks: map[string]*recorder{}, done: make(chan struct{})}
	ss := map[string]sinks.Sink{}
	for _, sc := range cfg.Sinks {
		r := &recorder{}
		h.sinks[sc.Name] = r
		ss[sc.Name] = r
		if sc.Name == "rec" && sink != nil {
			ss[sc.Name] = sink
		}
	}
	return h.run(t, Options{Config: cfg, Resolver: newResolver(), Sinks: ss, Stores: stores, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
}

// liveWatchers counts the open watches of gvr.
func liveWatchers(f *fakeSource, gvr schema.GroupVersionResource) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.watchers[gvr] {
		w.mu.Lock()
		if !w.stopped {
			n++
		}
		w.mu.Unlock()
	}
	return n
}

// waitWatching waits until gvr has an open watch (a change applied
// before would not reach the informer in the fake).
func waitWatching(t *testing.T, f *fakeSource, gvr schema.GroupVersionResource) {
	t.Helper()
	waitUntil(t, "an open watch", func() bool { return liveWatchers(f, gvr) > 0 })
}

// relistNow ends the watch with 410 Gone until the reflector lists
// again (calls = what counts list attempts, streams or List calls).
func relistNow(t *testing.T, f *fakeSource, gvr schema.GroupVersionResource, calls func() int) {
	t.Helper()
	before := calls()
	deadline := time.Now().Add(20 * time.Second)
	for calls() == before {
		if time.Now().After(deadline) {
			t.Fatal("the reflector did not list again after 410")
		}
		if liveWatchers(f, gvr) > 0 {
			f.expire(gvr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closeWatches ends every watch of gvr without an error, as a dropped
// connection does.
func closeWatches(f *fakeSource, gvr schema.GroupVersionResource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers[gvr] {
		w.Stop()
	}
	f.watchers[gvr] = nil
}
