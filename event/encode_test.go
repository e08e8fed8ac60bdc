package event

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

// withKey is an Event as encoding/json writes it with the partitionkey
// extension before data: the fields of the embedded Event come first,
// and Data here hides the embedded one.
type withKey struct {
	Event
	PartitionKey string `json:"partitionkey,omitempty"`
	Data         any    `json:"data"`
}

// reflectMarshal is what Marshal wrote before encode.go: encoding/json
// without HTML escaping, plus the partitionkey extension. Marshal must
// write the same bytes.
func reflectMarshal(e *Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	var v any = e
	if e != nil {
		v = withKey{Event: *e, PartitionKey: e.PartitionKey(), Data: e.Data}
	}
	if err := enc.Encode(v); err != nil {
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
	if e == nil {
		return
	}
	// MarshalData (binary mode's body) is the data member alone.
	var b bytes.Buffer
	je := json.NewEncoder(&b)
	je.SetEscapeHTML(false)
	werr = je.Encode(e.Data)
	want = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	got, gerr = MarshalData(e)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%s: MarshalData error %v, encoding/json says %v", name, gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("%s: MarshalData\n got %s\nwant %s", name, got, want)
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

// TestMarshalTimeOutOfRangeErrorIsEncodingJSONs: an out-of-range time fails
// with the error encoding/json gives: "json: error calling MarshalJSON for
// type time.Time: Time.MarshalJSON: year outside of range [0,9999]", which
// names Time.MarshalJSON (not Time.AppendText, which the encoder calls).
func TestMarshalTimeOutOfRangeErrorIsEncodingJSONs(t *testing.T) {
	for _, y := range []int{10000, -1} {
		e := base(&ChangeData{Object: map[string]any{}})
		e.Time = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		_, werr := reflectMarshal(e)
		_, gerr := Marshal(e)
		if werr == nil || gerr == nil {
			t.Fatalf("year %d: errors %v / %v", y, gerr, werr)
		}
		if gerr.Error() != werr.Error() {
			t.Errorf("year %d: Marshal error %q, encoding/json says %q", y, gerr, werr)
		}
	}
}

// TestAppendMarshal appends exactly what Marshal writes after dst, and
// leaves dst as it was on error.
func TestAppendMarshal(t *testing.T) {
	e := base(&ChangeData{Object: map[string]any{"a": "x\"y", "n": nil}})
	want, _ := Marshal(e)
	got, err := AppendMarshal([]byte("prefix"), e)
	if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendMarshal = %s, %v", got, err)
	}
	bad := base(&ChangeData{Object: map[string]any{"f": func() {}}})
	got, err = AppendMarshal([]byte("prefix"), bad)
	if err == nil || string(got) != "prefix" {
		t.Fatalf("AppendMarshal of a func = %q, %v; want prefix and an error", got, err)
	}
}

// FuzzAppendMarshalIntoDirtyBuffer: AppendMarshal into a dirty, reused
// buffer is prefix + Marshal, which is encoding/json's output, for any
// strings in the envelope, keys and values.
func FuzzAppendMarshalIntoDirtyBuffer(f *testing.F) {
	f.Add("n", "k", "v", 3, 100)
	f.Add("", "", "", 0, 0)
	f.Add("abcdefgh\xff", "\u2028abcdefg", "é\"\\", 8, 4096)
	f.Fuzz(func(t *testing.T, name, k, v string, keep, capacity int) {
		keep &= 63
		capacity &= 8191
		e := base(&ChangeData{Object: map[string]any{k: v, "metadata": map[string]any{"name": name, k: []any{v, k}}}, ChangedPaths: []string{k, v}})
		e.Name, e.Subject = name, "/"+k
		want, werr := reflectMarshal(e)
		m, merr := Marshal(e)
		if (werr == nil) != (merr == nil) || werr == nil && !bytes.Equal(m, want) {
			t.Fatalf("Marshal %s / %v, encoding/json %s / %v", m, merr, want, werr)
		}
		buf := make([]byte, 0, max(capacity, keep))
		buf = append(buf, bytes.Repeat([]byte{'#'}, cap(buf))...)
		got, err := AppendMarshal(buf[:keep], e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:keep], bytes.Repeat([]byte{'#'}, keep)) || !bytes.Equal(got[keep:], want) {
			t.Fatalf("AppendMarshal: got %s, want %s after %d bytes", got, want, keep)
		}
	})
}

// TestAppendMarshalConcurrentWithMarshal: AppendMarshal and Marshal share
// the encoder pool; an encoder put back by AppendMarshal must not carry
// the caller's buffer, which Marshal on another goroutine would then
// write into.
func TestAppendMarshalConcurrentWithMarshal(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64<<10)
			for i := 0; i < 2000; i++ {
				e := base(&ChangeData{Object: map[string]any{"g": float64(g), "i": float64(i), "s": strings.Repeat("x", i%300)}})
				want, _ := reflectMarshal(e)
				b, err := AppendMarshal(buf[:0], e)
				if err != nil || !bytes.Equal(b, want) {
					t.Errorf("AppendMarshal: %s", b)
					return
				}
				buf = b
				m, _ := Marshal(e)
				if !bytes.Equal(m, want) || !bytes.Equal(buf, want) {
					t.Errorf("Marshal after AppendMarshal changed: %s / %s", m, buf)
					return
				}
			}
		}()
	}
	wg.Wait()
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
