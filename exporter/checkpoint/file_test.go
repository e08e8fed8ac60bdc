package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Restored(); ok {
		t.Error("a new file reports a restored state")
	}
	k := state.Key{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Namespace: "shop", Name: "web"}
	gone := state.Key{GVR: k.GVR, Namespace: "shop", Name: "gone"}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{"replicas": int64(3)}}}
	s.Put(k, state.Record{UID: "u1", ResourceVersion: "7", Object: obj, Scope: "deployments.apps -n shop"})
	s.Put(gone, state.Record{UID: "u2", ResourceVersion: "8"})
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Delete(gone)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f2, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	s2, err := f2.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.Restored(); !ok {
		t.Error("reopened file: not restored")
	}
	r, ok := s2.Get(k)
	if !ok || r.UID != "u1" || r.ResourceVersion != "7" || r.Scope != "deployments.apps -n shop" || r.Object.Object["spec"].(map[string]any)["replicas"] != int64(3) {
		t.Errorf("restored record %+v", r)
	}
	if _, ok := s2.Get(gone); ok {
		t.Error("a deleted record came back")
	}
	other, _ := f2.Store("other")
	if _, ok := other.Restored(); ok {
		t.Error("another sink's bucket reports restored")
	}
}

func TestCorruptFileIsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path, true, nil)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrLocked) || f == nil {
		t.Fatalf("OpenFile on garbage: %v, %v", f, err)
	}
	defer f.Close()
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	assertMode(t, aside[0], 0o600)
	assertMode(t, path, 0o600)
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Restored(); ok {
		t.Error("a fresh file after corruption reports restored")
	}
}

func TestLockedFileIsNotMovedAside(t *testing.T) {
	defer func(d time.Duration) { lockTimeout = d }(lockTimeout)
	lockTimeout = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "cp.db")
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Store("audit")
	k := state.Key{Name: "kept"}
	s.Put(k, state.Record{UID: "u", ResourceVersion: "1"})
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	second, err := OpenFile(path, true, nil)
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrCorrupt) || second != nil {
		t.Fatalf("second OpenFile of a held file = %v, %v; want ErrLocked", second, err)
	}
	if want := "checkpoint file " + path + " is locked by another process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Errorf("a locked file was moved aside: %v", aside)
	}

	// The holder is unaffected, and its state is there once it lets go.
	s.Put(state.Key{Name: "later"}, state.Record{UID: "v", ResourceVersion: "2"})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, _ = f.Store("audit")
	for _, name := range []string{"kept", "later"} {
		if _, ok := s.Get(state.Key{Name: name}); !ok {
			t.Errorf("record %s lost", name)
		}
	}
}

// TestRefusedRecordIsSkipped: a record bbolt refuses (a key over its
// limit) is counted and skipped; the rest of the flush lands and the next
// flush does not retry it.
func TestRefusedRecordIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Store("audit")
	long := state.Key{Name: strings.Repeat("n", bolt.MaxKeySize)}
	ok := state.Key{Name: "ok"}
	s.Put(long, state.Record{UID: "u", ResourceVersion: "1"})
	s.Put(ok, state.Record{UID: "v", ResourceVersion: "2"})
	if err := f.Flush(context.Background()); err != nil {
		t.Fatalf("a refused record failed the flush: %v", err)
	}
	if got := f.refused.Load(); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.refused.Load(); got != 1 {
		t.Errorf("refused = %d after another flush: the record was retried", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, found := boltValues(t, path)["sink/audit"][keyString(ok)]; !found {
		t.Error("the record next to the refused one was not written")
	}
}

func TestCollectorCountsShrunkAndRefused(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "cp.db"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.shrunk.Add(2)
	f.refused.Add(3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(f, false))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["kubefeed_checkpoint_shrunk_records_total"] != 2 || got["kubefeed_checkpoint_refused_records_total"] != 3 {
		t.Errorf("collected %v", got)
	}
}
