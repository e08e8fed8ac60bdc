package exporter

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The protobuf decision (issue 15: "decode built-in types from protobuf
// where it pays; measure first"). A typed informer decodes core Events
// from protobuf into structs; kubefeed needs each object as a map (for the
// diff, CEL filters, redaction and the envelope), so protobuf would cost
// the decode plus a conversion. These benchmarks decode the same 2,000
// Events as BenchmarkWatchDecodeFast (watchjson_test.go, JSON framed and
// parsed once into the map) both ways.
func benchProtoEvents(b *testing.B, toMap bool) {
	raws := make([][]byte, 2000)
	for i := range raws {
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d.17a2b3c4d5e6f708", i), Namespace: "bench", UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
				ResourceVersion: fmt.Sprint(i), CreationTimestamp: metav1.Date(2026, 11, 28, 15, 0, 0, 0, metav1.Now().Location())},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("web-%d", i), UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
				APIVersion: "v1", ResourceVersion: "123456", FieldPath: "spec.containers{app}"},
			Reason: "BackOff", Message: fmt.Sprintf("Back-off restarting failed container app in pod web-%d_bench(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)", i),
			Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, Count: 1, Type: "Warning",
			ReportingController: "kubelet", ReportingInstance: "node-1",
		}
		raw, err := ev.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = raw
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range raws {
			var ev corev1.Event
			if err := ev.Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
			if toMap {
				if _, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkEventsProtobufTyped is what the typed informer pays.
func BenchmarkEventsProtobufTyped(b *testing.B) { benchProtoEvents(b, false) }

// BenchmarkEventsProtobufToMap is what kubefeed would pay with protobuf.
func BenchmarkEventsProtobufToMap(b *testing.B) { benchProtoEvents(b, true) }
