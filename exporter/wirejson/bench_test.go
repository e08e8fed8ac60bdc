package wirejson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	kjson "sigs.k8s.io/json"
)

// eventStream is 2,000 core Events as a watch sends them (the same as
// exporter's BenchmarkWatchDecodeFast).
func eventStream() []byte {
	var sb strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&sb, `{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"web-%d.17a2b3c4d5e6f708","namespace":"bench","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","resourceVersion":"%d","creationTimestamp":"2026-11-28T15:00:00Z","managedFields":[{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-11-28T15:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:count":{},"f:firstTimestamp":{},"f:involvedObject":{},"f:lastTimestamp":{},"f:message":{},"f:reason":{},"f:source":{"f:component":{},"f:host":{}},"f:type":{}}}]},"involvedObject":{"kind":"Pod","namespace":"bench","name":"web-%d","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","apiVersion":"v1","resourceVersion":"123456","fieldPath":"spec.containers{app}"},"reason":"BackOff","message":"Back-off restarting failed container app in pod web-%d_bench(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)","source":{"component":"kubelet","host":"node-1"},"firstTimestamp":"2026-11-28T15:00:00Z","lastTimestamp":"2026-11-28T15:00:00Z","count":1,"type":"Warning","eventTime":null,"reportingComponent":"kubelet","reportingInstance":"node-1"}}`+"\n", i, i, i, i)
	}
	return []byte(sb.String())
}

// The decoder on 2,000 Events (per op), with managedFields skipped or kept.
func BenchmarkDecode(b *testing.B) {
	data := eventStream()
	for _, drop := range []bool{true, false} {
		b.Run(fmt.Sprintf("drop=%v", drop), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				d := NewDecoder(bytes.NewReader(data), Options{DropManagedFields: drop})
				n := 0
				var ev Event
				for d.Decode(&ev) == nil {
					n++
				}
				if n != 2000 {
					b.Fatal(n)
				}
			}
		})
	}
}

// What it replaced: encoding/json framing, then kjson (without cutting
// managedFields from the bytes first).
func BenchmarkDecodeKJSON(b *testing.B) {
	data := eventStream()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec := json.NewDecoder(bytes.NewReader(data))
		var raw json.RawMessage
		n := 0
		for {
			raw = raw[:0]
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			var ev kjsonEvent
			if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &ev); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 2000 {
			b.Fatal(n)
		}
	}
}

// The heap the decoded Events keep (what an informer cache holds), with
// managedFields dropped as the informer's transform does, against kjson's
// maps with managedFields deleted afterwards.
func BenchmarkRetained(b *testing.B) {
	data := eventStream()
	decoders := map[string]func() []map[string]any{
		"wirejson": func() []map[string]any {
			var out []map[string]any
			d := NewDecoder(bytes.NewReader(data), Options{DropManagedFields: true})
			var ev Event
			for d.Decode(&ev) == nil {
				out = append(out, ev.Object)
			}
			return out
		},
		"kjson": func() []map[string]any {
			var out []map[string]any
			dec := json.NewDecoder(bytes.NewReader(data))
			for {
				var raw json.RawMessage
				if dec.Decode(&raw) != nil {
					return out
				}
				var ev kjsonEvent
				if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &ev); err != nil {
					b.Fatal(err)
				}
				delete(ev.Object["metadata"].(map[string]any), "managedFields")
				out = append(out, ev.Object)
			}
		},
	}
	for name, decode := range decoders {
		b.Run(name, func(b *testing.B) {
			var retained uint64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				objs := decode()
				runtime.GC()
				runtime.ReadMemStats(&after)
				if len(objs) != 2000 {
					b.Fatal(len(objs))
				}
				retained += after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(objs)
			}
			b.ReportMetric(float64(retained)/float64(b.N)/2000, "retained-B/event")
		})
	}
}
