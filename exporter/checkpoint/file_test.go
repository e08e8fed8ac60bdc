package checkpoint

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter"
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
	k := exporter.Key{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Namespace: "shop", Name: "web"}
	gone := exporter.Key{GVR: k.GVR, Namespace: "shop", Name: "gone"}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "spec": map[string]any{"replicas": int64(3)}}}
	s.Put(k, exporter.Record{UID: "u1", ResourceVersion: "7", Object: obj, Scope: "deployments.apps -n shop"})
	s.Put(gone, exporter.Record{UID: "u2", ResourceVersion: "8"})
	if err := f.Flush(); err != nil {
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
	if !ok || r.UID != "u1" || r.ResourceVersion != "7" || r.Scope != "deployments.apps -n shop" || r.Object.Object["spec"].(map[string]any)["replicas"] != float64(3) {
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
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path, true, nil)
	if err == nil || f == nil {
		t.Fatalf("OpenFile on garbage: %v, %v", f, err)
	}
	defer f.Close()
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Restored(); ok {
		t.Error("a fresh file after corruption reports restored")
	}
}
