package checkpoint

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/state"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestStateNumbersRoundTrip: a restored state equals the cached one, with
// numbers typed as apimachinery's unstructured decoder types them.
func TestStateNumbersRoundTrip(t *testing.T) {
	obj := map[string]any{
		"apiVersion": "example.com/v1", "kind": "Thing",
		"spec": map[string]any{
			"big":      int64(9007199254740993), // 2^53+1
			"min":      int64(-9223372036854775808),
			"max":      int64(9223372036854775807),
			"half":     1.5,
			"huge":     1e300,
			"zero":     int64(0),
			"nothing":  nil,
			"list":     []any{int64(9007199254740995), 2.25, map[string]any{"n": int64(-9007199254740993)}},
			"a/b~c":    "key with / and ~",
			"floatInt": 2.0, // JSON "2": decodes as int64, as from the API server
		},
	}
	want := map[string]any{}
	for k, v := range obj {
		want[k] = v
	}
	want["spec"] = map[string]any{}
	for k, v := range obj["spec"].(map[string]any) {
		want["spec"].(map[string]any)[k] = v
	}
	want["spec"].(map[string]any)["floatInt"] = int64(2)

	path := filepath.Join(t.TempDir(), "cp.db")
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Store("audit")
	k := state.Key{Name: "thing"}
	s.Put(k, state.Record{UID: "u", ResourceVersion: "1", Object: &unstructured.Unstructured{Object: obj}})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, _ = f.Store("audit")
	r, ok := s.Get(k)
	if !ok || r.Object == nil {
		t.Fatalf("not restored: %+v", r)
	}
	if !reflect.DeepEqual(r.Object.Object, want) {
		t.Errorf("restored state\n%#v\nwant\n%#v", r.Object.Object["spec"], want["spec"])
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", "{", "bad checkpoint record"},
		{"newer format", `{"f":3,"u":"x","v":"1"}`, "format 3 is newer"},
		{"state not gzip", `{"f":2,"u":"x","v":"1","o":"AAAA"}`, "bad checkpoint state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeRecord([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodeRecord(%s) = %v, want an error with %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestSyncEndsWithItsContext(t *testing.T) {
	c := newCommitter() // no flush loop runs
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Sync(ctx); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Sync with an ended context and no flusher = %v", err)
	}
}

// BenchmarkEncodeRecord is what a flush spends per dirty ~1 KiB record
// with its state.
func BenchmarkEncodeRecord(b *testing.B) {
	data := map[string]any{}
	for i := 0; i < 16; i++ {
		data[fmt.Sprintf("key-%02d", i)] = fmt.Sprintf("%052d", i)
	}
	r := state.Record{UID: "u", ResourceVersion: "1", Object: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "a"}, "data": data}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := encodeRecord(r, true); err != nil {
			b.Fatal(err)
		}
	}
}
