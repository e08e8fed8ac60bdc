package jsonpatch_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// benchPod returns a ~4.5 KiB Pod-like object at version rv; two versions
// differ in resourceVersion, an annotation, a heartbeat and spec.replicas.
func benchPod(rv int) map[string]any {
	containers := []any{}
	for i := 0; i < 3; i++ {
		env := []any{}
		for j := 0; j < 20; j++ {
			env = append(env, map[string]any{"name": fmt.Sprintf("ENV_%d_%d", i, j), "value": fmt.Sprintf("value-%d-%d-of-this-variable", i, j)})
		}
		containers = append(containers, map[string]any{
			"name": fmt.Sprintf("c%d", i), "image": "registry.example.com/team/app:v1.2.3",
			"env": env, "ports": []any{map[string]any{"containerPort": int64(8080 + i), "protocol": "TCP"}},
			"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
		})
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": "bench", "uid": "uid-p", "resourceVersion": fmt.Sprint(rv),
			"labels": map[string]any{"app": "bench", "pod-template-hash": "abcdef"}, "annotations": map[string]any{"ping": fmt.Sprint(rv)}},
		"spec":   map[string]any{"containers": containers, "nodeName": "node-1", "restartPolicy": "Always", "replicas": int64(rv)},
		"status": map[string]any{"phase": "Running", "podIP": "10.0.0.1", "conditions": []any{map[string]any{"type": "Ready", "status": "True", "lastHeartbeatTime": fmt.Sprintf("2026-01-01T00:00:%02dZ", rv%60)}}},
	}
}

// BenchmarkDiff: "plain" diffs everything; "ignore" diffs with the default
// ignored paths plus the annotation, as a rule does, leaving one op.
func BenchmarkDiff(b *testing.B) {
	a, c := benchPod(1), benchPod(2)
	if raw, _ := json.Marshal(a); len(raw) < 4000 || len(raw) > 5000 {
		b.Fatalf("object is %d bytes, want ~4.5 KiB", len(raw))
	}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = jsonpatch.Diff(a, c)
		}
	})
	o := jsonpatch.Options{Ignore: append(append(filters.Patterns{}, filters.DefaultIgnore...), filters.MustPattern("/metadata/annotations/ping"))}
	if ops := o.Diff(a, c); len(ops) != 1 {
		b.Fatalf("ignore: %d ops, want 1", len(ops))
	}
	b.Run("ignore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = o.Diff(a, c)
		}
	})
}
