package exporter

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// A scope the API server never lets list (RBAC) holds back only itself:
// the other scope delivers, and readiness names the stuck one.
func TestUnsyncedScopeHoldsBackOnlyItself(t *testing.T) {
	src := newFakeSource(0)
	src.listErr[secretRes.GVR] = apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "", errors.New("RBAC"))
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}, {Resource: "configmaps"}}), harnessOpts{src: src})
	deadline := time.Now().Add(10 * time.Second)
	for (h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}] == nil || !h.ex.scopeSet()[scopeID{GVR: cmRes.GVR}].ready.Load()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	h.sinks["rec"].waitFor(t, "the configmap", func(e []*event.Event) bool { return len(e) == 1 })
	ok, why := h.ex.Healthy()
	if ok || why != "scope secrets not synced" {
		t.Errorf("Healthy = %v %q, want not ready naming the secrets scope", ok, why)
	}
}

// Before Run, an Exporter is not ready, and says it is starting.
func TestNotReadyBeforeRun(t *testing.T) {
	ex, err := New(Options{Config: newConfig([]config.Watch{{Resource: "configmaps"}}), Sinks: map[string]sinks.Sink{"rec": &recorder{}}, clientFor: newFakeSource(0).client})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := ex.Healthy(); ok || why != "starting" || ex.Ready() {
		t.Fatalf("Healthy = %v %q, Ready = %v before Run; want not ready, starting", ok, why, ex.Ready())
	}
}

// healthSink is a recorder whose Health the test sets (a sink that could
// not be opened yet, as sinks.Deferred reports it).
type healthSink struct {
	recorder
	down atomic.Pointer[string]
}

func (s *healthSink) Health() (bool, string) {
	if why := s.down.Load(); why != nil {
		return false, *why
	}
	return true, ""
}

// A sink that is not open makes the Exporter not ready, naming the sink's
// reason, while every scope has synced; once it opens, the Exporter is
// ready.
func TestSinkNotOpenIsNotReady(t *testing.T) {
	sink := &healthSink{}
	why := "sink rec: connection refused"
	sink.down.Store(&why)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{sink: sink})
	waitUntil(t, "the scope synced", func() bool { return h.ex.synced() })
	if ok, got := h.ex.Healthy(); ok || got != why {
		t.Fatalf("Healthy = %v %q with the sink down, want not ready, %q", ok, got, why)
	}
	sink.down.Store(nil)
	h.waitReady()
	h.src.apply(cmRes.GVR, cm("a", "x", nil), false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sink.mu.Lock()
		n := len(sink.events)
		sink.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events delivered once the sink opened, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
