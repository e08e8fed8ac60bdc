package plan

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// benchDeployment is a Deployment at version v as the cache keeps it with
// attribution on (exporter's BenchmarkAttribution's): three field
// managers (a client-side apply that created it, the scale subresource
// without a time, and ops-bot whose time moves with every version),
// managedFields as the watch event's text.
func benchDeployment(b *testing.B, v int) map[string]any {
	b.Helper()
	mf := fmt.Sprintf(`[
{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"apps/v1","time":"2026-12-07T09:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:team":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"sidecar\"}":{".":{},"f:image":{},"f:name":{}}},"f:dnsPolicy":{},"f:restartPolicy":{}}}}}},
{"manager":"kubectl","operation":"Update","subresource":"scale","apiVersion":"apps/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{}}}},
{"manager":"ops-bot","operation":"Apply","apiVersion":"apps/v1","time":"2026-12-07T10:00:%02dZ","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}]`, v%60)
	text := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"bench","uid":"u1","resourceVersion":"%d","generation":%d,"creationTimestamp":"2026-12-07T09:00:00Z","labels":{"app":"web","team":"shop"},"annotations":{"deployment.kubernetes.io/revision":"%d"}},
"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"registry.example.com/shop/app:%d","resources":{"requests":{"cpu":"100m","memory":"128Mi"}}},{"name":"sidecar","image":"registry.example.com/proxy:1"}]}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%%","maxUnavailable":"25%%"}}},
"status":{"observedGeneration":%d,"replicas":3,"readyReplicas":3}}`, v, v, v, v, v)
	var obj map[string]any
	if err := json.Unmarshal([]byte(text), &obj); err != nil {
		b.Fatal(err)
	}
	obj["metadata"].(map[string]any)["managedFields"] = mf
	return obj
}

// BenchmarkChangedBy is attribution's own share of a change: who made
// ops-bot's change of an image and an annotation.
func BenchmarkChangedBy(b *testing.B) {
	prev, cur := benchDeployment(b, 1), benchDeployment(b, 2)
	ops := jsonpatch.Options{Ignore: filters.DefaultIgnore}.Diff(prev, cur)
	b.ReportAllocs()
	for b.Loop() {
		got := ChangedBy(event.Modified, prev, cur, ops)
		if len(got) != 1 || got[0].Manager != "ops-bot" {
			b.Fatalf("ChangedBy = %v", got)
		}
	}
}

func BenchmarkWithoutManagedFields(b *testing.B) {
	obj := benchDeployment(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		if out := WithoutManagedFields(obj); out["metadata"].(map[string]any)["managedFields"] != nil {
			b.Fatal("kept")
		}
	}
}

func BenchmarkManagedEntries(b *testing.B) {
	text, _ := managedText(benchDeployment(b, 2))
	b.SetBytes(int64(len(text)))
	var buf [maxEntries]managedEntry
	for b.Loop() {
		if len(managedEntries(buf[:0], text, nil)) != 3 {
			b.Fatal("entries")
		}
	}
}

// BenchmarkChangedByCold is BenchmarkChangedBy over many objects, as a
// worker meets them: their managedFields texts are out of the CPU's
// caches by the time their change is rendered.
func BenchmarkChangedByCold(b *testing.B) {
	const n = 20000
	type change struct {
		prev, cur map[string]any
		ops       []jsonpatch.Op
	}
	changes := make([]change, n)
	for i := range changes {
		prev, cur := benchDeployment(b, 1), benchDeployment(b, 2+i%58) // ops-bot's time moved
		// Each its own text, as each object's is.
		for _, o := range []map[string]any{prev, cur} {
			md := o["metadata"].(map[string]any)
			md["managedFields"] = strings.Clone(md["managedFields"].(string))
		}
		changes[i] = change{prev, cur, jsonpatch.Options{Ignore: filters.DefaultIgnore}.Diff(prev, cur)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := &changes[i%n]
		if got := ChangedBy(event.Modified, c.prev, c.cur, c.ops); len(got) != 1 {
			b.Fatalf("ChangedBy = %v", got)
		}
	}
}
