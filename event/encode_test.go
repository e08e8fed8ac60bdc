package event

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// reflectMarshal is what Marshal wrote before encode.go: encoding/json
// without HTML escaping. Marshal must write the same bytes.
func reflectMarshal(e *Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func sameAsReflect(t *testing.T, name string, e *Event) {
	t.Helper()
	want, werr := reflectMarshal(e)
	got, gerr := Marshal(e)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%s: error %v, encoding/json says %v", name, gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", name, got, want)
	}
}

func base(data any) *Event {
	return &Event{SpecVersion: SpecVersion, ID: "u.1.modified", Source: "kubefeed/c", Type: Modified.Type(),
		Subject: "/api/v1/namespaces/a/configmaps/b", Time: time.Date(2026, 11, 28, 15, 4, 5, 123456000, time.UTC),
		DataContentType: DataContentType, Cluster: "c", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps",
		Namespace: "a", Name: "b", UID: "u", ResourceVersion: "1", Data: data}
}

var yes, no = true, false

func TestMarshalIsEncodingJSON(t *testing.T) {
	nasty := "q\"b\\s/<>&\x00\x01\x1f\x7f\b\f\n\r\t é 日本 \u2028\u2029 \xff\xfe bad \xe2\x82 end 🙂"
	obj := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "b", "labels": map[string]any{"a/b": "x", "c~d": "y", nasty: nasty}, "annotations": map[string]any{}},
		"ints":     []any{int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), 7, int32(-3)},
		"floats":   []any{0.0, -0.0, 1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, -2.5e-10, math.MaxFloat64, math.SmallestNonzeroFloat64, float32(1.1)},
		"numbers":  []any{json.Number("12345678901234567890123"), json.Number("1.50")},
		"empty":    []any{}, "nilSlice": []any(nil), "nilMap": map[string]any(nil), "null": nil, "t": true, "f": false,
		"strs": []string{"a", nasty}, "smap": map[string]string{"z": "1", "a": nasty},
		"uint": uint64(math.MaxUint64), "nested": []any{map[string]any{"b": []any{map[string]any{"z": 1.0, "a": nil}}}},
	}
	cases := map[string]*Event{
		"added": base(&ChangeData{Object: obj}),
		"modified": base(&ChangeData{Object: obj, OldObject: map[string]any{"x": 1.0}, PreviousResourceVersion: "0", Recovered: true, Truncated: "oldObject",
			Patch:        []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/a~1b", Value: nil}, {Op: jsonpatch.OpRemove, Path: "/x"}, {Op: jsonpatch.OpAdd, Path: "/m", Value: obj}},
			ChangedPaths: []string{"/a~1b", "/x", nasty}}),
		"empty oldObject and patch": base(&ChangeData{Object: map[string]any{}, OldObject: map[string]any{}, Patch: []jsonpatch.Op{}, ChangedPaths: []string{}}),
		"nil object":                base(&ChangeData{}),
		"nil data":                  base(nil),
		"nil change data":           base((*ChangeData)(nil)),
		"gap":                       base(&GapData{Scope: nasty, From: time.Unix(0, 0).UTC(), To: time.Unix(5, 7).UTC(), Reason: "relist"}),
		"bare":                      {Data: &ChangeData{Object: obj}},
		"involved": base(&ChangeData{Object: obj, InvolvedObject: &InvolvedObject{Labels: map[string]string{"app": "web", nasty: "x"}, Annotations: map[string]string{"n": nasty},
			OwnerReferences: []OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "r", UID: "u", Controller: &yes, BlockOwnerDeletion: &no}, {Kind: "X"}}}}),
		"involved empty": base(&ChangeData{Object: obj, InvolvedObject: &InvolvedObject{Labels: map[string]string{}}}),
		"other data":     base(map[string]any{"k": []any{1.0}}),
		"local time": func() *Event {
			e := base(&ChangeData{Object: obj})
			e.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
			return e
		}(),
	}
	for name, e := range cases {
		sameAsReflect(t, name, e)
	}
}

// Values encoding/json rejects are errors here too, never bad JSON.
func TestMarshalRejectsWhatEncodingJSONRejects(t *testing.T) {
	for name, v := range map[string]any{"NaN": math.NaN(), "Inf": math.Inf(-1), "bad number": json.Number("1x"), "chan": make(chan int)} {
		e := base(&ChangeData{Object: map[string]any{"v": []any{v}}, Patch: []jsonpatch.Op{{Op: jsonpatch.OpAdd, Path: "/v", Value: v}}})
		if _, err := Marshal(e); err == nil {
			t.Errorf("%s: no error", name)
		}
		sameAsReflect(t, name, e)
		bad := base(&ChangeData{Object: map[string]any{}, Patch: []jsonpatch.Op{{Op: jsonpatch.OpAdd, Path: "/v", Value: v}}})
		if _, err := Marshal(bad); err == nil || !strings.Contains(err.Error(), "/v") {
			t.Errorf("%s in a patch: error %v does not name the path", name, err)
		}
	}
	e := base(&ChangeData{Object: map[string]any{}})
	e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	sameAsReflect(t, "year 10000", e)
}

// Random strings and values: every byte sequence quotes as encoding/json
// quotes it.
func TestMarshalRandomIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randString := func() string {
		b := make([]byte, r.IntN(24))
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = byte(r.IntN(256))
			} else {
				b[i] = "a\"\\\x00\n<é\u2028"[r.IntN(10)]
			}
		}
		return string(b)
	}
	var randValue func(depth int) any
	randValue = func(depth int) any {
		switch n := r.IntN(8); {
		case n == 0 && depth < 4:
			m := map[string]any{}
			for i := r.IntN(5); i > 0; i-- {
				m[randString()] = randValue(depth + 1)
			}
			return m
		case n == 1 && depth < 4:
			var s []any
			for i := r.IntN(5); i > 0; i-- {
				s = append(s, randValue(depth+1))
			}
			return s
		case n == 2:
			return r.Int64() - r.Int64()
		case n == 3:
			return math.Float64frombits(r.Uint64()&^(0x7ff<<52) | uint64(r.IntN(0x7fe))<<52)
		case n == 4:
			return r.IntN(2) == 0
		case n == 5:
			return nil
		default:
			return randString()
		}
	}
	for i := 0; i < 3000; i++ {
		obj := map[string]any{"v": randValue(0), randString(): randValue(0)}
		e := base(&ChangeData{Object: obj, Patch: []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/" + randString(), Value: randValue(0)}}, ChangedPaths: []string{randString()}})
		e.Name = randString()
		sameAsReflect(t, "random", e)
	}
}

func BenchmarkMarshalReflect(b *testing.B) { benchMarshal(b, reflectMarshal) }
func BenchmarkMarshal(b *testing.B)        { benchMarshal(b, Marshal) }

func benchMarshal(b *testing.B, f func(*Event) ([]byte, error)) {
	obj := map[string]any{"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": "web-1.17a", "namespace": "shop", "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "resourceVersion": "48213", "creationTimestamp": "2026-11-28T15:00:00Z"},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "resourceVersion": "123456", "fieldPath": "spec.containers{app}"},
		"reason":         "BackOff", "message": "Back-off restarting failed container app in pod web-1_shop(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)",
		"source": map[string]any{"component": "kubelet", "host": "node-1"}, "firstTimestamp": "2026-11-28T15:00:00Z", "lastTimestamp": "2026-11-28T15:05:00Z",
		"count": int64(7), "type": "Warning", "eventTime": nil, "reportingComponent": "kubelet", "reportingInstance": "node-1"}
	e := base(&ChangeData{Object: obj, PreviousResourceVersion: "48200", ChangedPaths: []string{"/count", "/lastTimestamp"},
		Patch: []jsonpatch.Op{{Op: jsonpatch.OpReplace, Path: "/count", Value: int64(7)}, {Op: jsonpatch.OpReplace, Path: "/lastTimestamp", Value: "2026-11-28T15:05:00Z"}}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f(e); err != nil {
			b.Fatal(err)
		}
	}
}
