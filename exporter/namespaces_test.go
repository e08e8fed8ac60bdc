package exporter

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// nsServer serves namespaces as the API server does to a label-selected
// watch: a namespace that starts matching arrives as ADDED, one that stops
// matching (or is deleted) as DELETED.
type nsServer struct {
	dynamic.Interface // only Resource(namespaces) is used
	mu                sync.Mutex
	rv                int
	objs              map[string]*unstructured.Unstructured
	watches           []*fakeWatch
}

type nsResource struct {
	dynamic.NamespaceableResourceInterface // only List and Watch are used
	s                                      *nsServer
}

func (s *nsServer) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	if gvr != namespacesGVR {
		panic("nsServer serves namespaces only, not " + gvr.String())
	}
	return nsResource{s: s}
}

func (r nsResource) Namespace(string) dynamic.ResourceInterface { return r }

func (r nsResource) List(_ context.Context, o metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	sel, err := labels.Parse(o.LabelSelector)
	if err != nil {
		return nil, err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "NamespaceList"}}
	l.SetResourceVersion(strconv.Itoa(r.s.rv))
	for _, u := range r.s.objs {
		if sel.Matches(labels.Set(u.GetLabels())) {
			l.Items = append(l.Items, *u.DeepCopy())
		}
	}
	return l, nil
}

func (r nsResource) Watch(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		return nil, apierrors.NewBadRequest("sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
	}
	sel, err := labels.Parse(o.LabelSelector)
	if err != nil {
		return nil, err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	w := &fakeWatch{ch: make(chan watch.Event, 1024), sel: sel}
	r.s.watches = append(r.s.watches, w)
	return w, nil
}

// set creates or relabels a namespace; nil labels deletes it.
func (s *nsServer) set(name string, lbls map[string]string, deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv++
	old := s.objs[name]
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	u.SetName(name)
	u.SetUID(types.UID("ns-" + name))
	u.SetLabels(lbls)
	u.SetResourceVersion(strconv.Itoa(s.rv))
	if deleted {
		delete(s.objs, name)
	} else {
		s.objs[name] = u
	}
	for _, w := range s.watches {
		was := old != nil && w.sel.Matches(labels.Set(old.GetLabels()))
		is := !deleted && w.sel.Matches(labels.Set(lbls))
		switch {
		case was && is:
			w.send(watch.Event{Type: watch.Modified, Object: u.DeepCopy()})
		case is:
			w.send(watch.Event{Type: watch.Added, Object: u.DeepCopy()})
		case was:
			w.send(watch.Event{Type: watch.Deleted, Object: u.DeepCopy()})
		}
	}
}

// storeKeys are the configmap keys a store holds per namespace
// (sentinels left out).
func storeKeys(st state.Store) map[string][]string {
	out := map[string][]string{}
	st.Range(func(k state.Key, _ state.Record) bool {
		if !isSentinel(k) {
			out[k.Namespace] = append(out[k.Namespace], k.Name)
		}
		return true
	})
	return out
}

func scopeIn(h *harness, ns string) bool {
	for id := range h.ex.scopeSet() {
		if id.GVR == cmRes.GVR && id.Namespace == ns {
			return true
		}
	}
	return false
}

// TestNamespaceSelector follows namespaces as the README promises for
// namespaceSelector: a namespace gaining the label is watched (its
// existing objects emit nothing, with initialList skip), one losing the
// label or deleted stops being watched and what was delivered from it is
// forgotten without a deletion event.
func TestNamespaceSelector(t *testing.T) {
	nss := &nsServer{objs: map[string]*unstructured.Unstructured{}}
	nss.set("a", map[string]string{"team": "shop"}, false)
	nss.set("b", map[string]string{"team": "other"}, false)
	nss.set("c", map[string]string{"team": "shop"}, false)
	src := newFakeSource(0)
	for _, o := range []struct{ ns, name string }{{"a", "x"}, {"b", "y"}, {"c", "z"}} {
		src.apply(cmRes.GVR, cm(o.ns, o.name, nil), true)
	}
	cfg := newConfig([]config.Watch{{Resource: "configmaps", NamespaceSelector: "team=shop"}})
	st := state.NewMemoryStore()
	h := &harness{t: t, src: src, sinks: map[string]*recorder{"rec": {}}, done: make(chan struct{})}
	h.run(t, Options{Config: cfg, Client: nss, Resolver: newResolver(), Sinks: map[string]sinks.Sink{"rec": h.sinks["rec"]},
		Stores: map[string]state.Store{"rec": st}, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		ResolveRetry: 20 * time.Millisecond, clientFor: src.client})
	h.waitReady()
	rec := h.sinks["rec"]
	// barrier applies a configmap in a watched namespace and waits for it,
	// so that anything sent before it is in the recorder.
	n := 0
	barrier := func(ns string) []*event.Event {
		t.Helper()
		n++
		name := "barrier-" + strconv.Itoa(n)
		src.apply(cmRes.GVR, cm(ns, name, nil), false)
		return rec.waitFor(t, name, func(evs []*event.Event) bool {
			for _, e := range evs {
				if e.Name == name {
					return true
				}
			}
			return false
		})
	}
	only := func(evs []*event.Event, want ...string) {
		t.Helper()
		var got []string
		for _, e := range evs {
			got = append(got, e.Type+" "+e.Namespace+"/"+e.Name)
		}
		if len(got) != len(want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("events %v, want %v", got, want)
			}
		}
	}
	added, modified := event.Added.Type(), event.Modified.Type()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"matching namespaces at start, existing objects silent", func(t *testing.T) {
			if !scopeIn(h, "a") || !scopeIn(h, "c") || scopeIn(h, "b") {
				t.Fatalf("scopes %v, want configmaps in a and c only", h.ex.scopeSet())
			}
			src.apply(cmRes.GVR, cm("b", "y", map[string]any{"k": "v"}), false) // not selected
			only(barrier("a"), added+" a/barrier-1")
			if got := storeKeys(st); len(got["a"]) != 2 || len(got["c"]) != 1 || len(got["b"]) != 0 {
				t.Errorf("delivered state %v, want a: x and barrier-1, c: z", got)
			}
		}},
		{"a namespace gaining the label is followed live", func(t *testing.T) {
			nss.set("b", map[string]string{"team": "shop"}, false)
			waitUntil(t, "a scope in b", func() bool { return scopeIn(h, "b") })
			src.apply(cmRes.GVR, cm("b", "y", map[string]any{"k": "w"}), false)
			evs := rec.waitFor(t, "b/y modified", func(evs []*event.Event) bool { return len(evs) == 2 })
			// y existed when b joined: its first change is a modification
			// of the state recorded silently, not an addition.
			only(evs, added+" a/barrier-1", modified+" b/y")
		}},
		{"a namespace losing the label: scope stopped, state forgotten, no deletion", func(t *testing.T) {
			nss.set("a", map[string]string{"team": "other"}, false)
			waitUntil(t, "the scope in a stopped", func() bool { return !scopeIn(h, "a") })
			waitUntil(t, "a's delivered state forgotten", func() bool { return len(storeKeys(st)["a"]) == 0 })
			src.apply(cmRes.GVR, cm("a", "x", map[string]any{"k": "after"}), false) // no longer selected
			src.remove(cmRes.GVR, "a", "barrier-1", false)
			only(barrier("c"), added+" a/barrier-1", modified+" b/y", added+" c/barrier-2")
			if got := storeKeys(st); len(got["b"]) != 1 || len(got["c"]) != 2 {
				t.Errorf("delivered state %v, want b: y, c: z and barrier-2", got)
			}
		}},
		{"a deleted namespace: scope stopped, state forgotten, no deletion", func(t *testing.T) {
			nss.set("b", nil, true)
			waitUntil(t, "the scope in b stopped", func() bool { return !scopeIn(h, "b") })
			waitUntil(t, "b's delivered state forgotten", func() bool { return len(storeKeys(st)["b"]) == 0 })
			only(barrier("c"), added+" a/barrier-1", modified+" b/y", added+" c/barrier-2", added+" c/barrier-3")
		}},
		{"a namespace regaining the label: watched again, its objects silent", func(t *testing.T) {
			nss.set("a", map[string]string{"team": "shop"}, false)
			waitUntil(t, "a scope in a again", func() bool { return scopeIn(h, "a") })
			only(barrier("a"), added+" a/barrier-1", modified+" b/y", added+" c/barrier-2", added+" c/barrier-3", added+" a/barrier-4")
			if got := storeKeys(st); len(got["a"]) != 2 {
				t.Errorf("delivered state of a %v, want x (recorded silently) and barrier-4", got["a"])
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}
