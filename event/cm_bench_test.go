package event

import (
	"fmt"
	"testing"
)

// BenchmarkMarshalConfigMap encodes the added event of a ~1 KiB ConfigMap
// with sixteen data keys, as the drain benchmarks send.
func BenchmarkMarshalConfigMap(b *testing.B) {
	data := map[string]any{}
	for i := 0; i < 16; i++ {
		data[fmt.Sprintf("key-%02d", i)] = fmt.Sprintf("%052d", 1000*i)
	}
	obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "n", "namespace": "bench", "uid": "uid-n", "resourceVersion": "1000", "annotations": map[string]any{"bench/created": "1234567890123"}}, "data": data}
	e := base(&ChangeData{Object: obj})
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		buf, _ = AppendMarshal(buf[:0], e)
	}
}
