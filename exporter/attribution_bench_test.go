package exporter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/wirejson"
)

var deploymentsRes = resource.Resource{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
	GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespaced: true}

// deploymentEvent is a MODIFIED watch event of Deployment name at rv, as
// the API server sends it: three field managers (a client-side apply that
// created it, the scale subresource and an ops-bot server-side apply whose
// time moves with every version).
func deploymentEvent(name string, rv, v int) string {
	t := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).Add(time.Duration(v) * time.Second).Format(time.RFC3339)
	return fmt.Sprintf(`{"type":"MODIFIED","object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q,"namespace":"bench","uid":"uid-%s","resourceVersion":"%d","generation":%d,"creationTimestamp":"2026-12-07T09:00:00Z","labels":{"app":%q,"team":"shop"},"annotations":{"deployment.kubernetes.io/revision":"%d"},
"managedFields":[
{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"apps/v1","time":"2026-12-07T09:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:team":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"sidecar\"}":{".":{},"f:image":{},"f:name":{}}},"f:dnsPolicy":{},"f:restartPolicy":{}}}}}},
{"manager":"kubectl","operation":"Update","subresource":"scale","apiVersion":"apps/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{}}}},
{"manager":"ops-bot","operation":"Apply","apiVersion":"apps/v1","time":%q,"fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}]},
"spec":{"replicas":3,"selector":{"matchLabels":{"app":%q}},"template":{"metadata":{"labels":{"app":%q}},"spec":{"containers":[{"name":"app","image":"registry.example.com/shop/app:%d","resources":{"requests":{"cpu":"100m","memory":"128Mi"}}},{"name":"sidecar","image":"registry.example.com/proxy:1"}]}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%%","maxUnavailable":"25%%"}}},
"status":{"observedGeneration":%d,"replicas":3,"readyReplicas":3}}}
`, name, name, rv, v, name, v, t, name, name, v, v)
}

// BenchmarkAttribution is the CPU of one Deployment change from the watch
// stream to the encoded event (decode, transform, handler, worker, plan,
// render, encode), with a rule without attribution (off) and with
// attribution: managers (on): what attribution costs per change.
func BenchmarkAttribution(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		w := config.Watch{Resource: "deployments.apps"}
		if on {
			name, w.Attribution = "on", config.AttributionManagers
		}
		b.Run(name, func(b *testing.B) { benchAttribution(b, w, on) })
	}
}

func benchAttribution(b *testing.B, w config.Watch, on bool) {
	// Each object changes once at most: no two versions merge in the
	// queue, so both runs render one event per change.
	objects := max(500, b.N)
	ex, s, d := pipelineOf(b, 4, nil, deploymentsRes, w)
	if s.keepManagers.Load() != on {
		b.Fatalf("keepManagers %v, want %v", s.keepManagers.Load(), on)
	}
	store := s.informer.GetIndexer()
	// What the scope's watch decodes with (watchClient.watch).
	opts := wirejson.Options{DropManagedFields: !on, ManagedFieldsRaw: on}
	decode := func(stream string) []*unstructured.Unstructured {
		dec := newEventDecoder(io.NopCloser(strings.NewReader(stream)), opts)
		var out []*unstructured.Unstructured
		for {
			_, obj, err := dec.Decode()
			if err == io.EOF {
				return out
			}
			if err != nil {
				b.Fatal(err)
			}
			u, err := s.transform(obj)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, u.(*unstructured.Unstructured))
		}
	}
	var first strings.Builder
	for i := range objects {
		first.WriteString(deploymentEvent(fmt.Sprintf("d%d", i), 1, 1))
	}
	cur := decode(first.String())
	for _, u := range cur {
		_ = store.Add(u)
		s.onAdd(u, true)
	}
	// The stream of b.N changes, written before the clock starts.
	var stream bytes.Buffer
	for i := 0; i < b.N; i++ {
		stream.WriteString(deploymentEvent(fmt.Sprintf("d%d", i%objects), 10+i, 2+i))
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	r := ex.runners[0]
	go func() { r.run(ctx, 4); close(done) }()
	dec := newEventDecoder(io.NopCloser(&stream), opts)
	b.ReportAllocs()
	// The setup's garbage (the first versions' decoding, the stream's
	// formatting) is collected now, not by a cycle in the timed loop that
	// one run gets and the other may not.
	runtime.GC()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, obj, err := dec.Decode()
		if err != nil {
			b.Fatal(err)
		}
		t, _ := s.transform(obj)
		nw := t.(*unstructured.Unstructured)
		k := i % objects
		_ = store.Update(nw)
		s.onUpdate(cur[k], nw)
		cur[k] = nw
	}
	for r.queue.Len() > 0 || r.pending.len() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/change")
	b.ReportMetric(float64(d.n.Load())/float64(b.N), "events/change")
	r.queue.ShutDown()
	cancel()
	<-done
}
