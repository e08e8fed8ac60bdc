package wirejson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// stream is what an API server sends on a watch: events of every type,
// separated by newlines or nothing, some split across lines.
var stream = []string{
	`{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"a/b~c","namespace":"ns","resourceVersion":"5","managedFields":[{"manager":"m","fieldsV1":{"f:x":{}}}]},"count":1,"big":123456789012345678,"huge":123456789012345678901234567890,"f":1.5,"neg":-7,"e":1e3,"n":null,"s":"x\u2028y\n","arr":[1,2.5,{"k":[]}],"empty":{}}}` + "\n",
	`{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"x","resourceVersion":"6"},"count":2}}`,
	`{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"Event","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}`,
	"\r\n\t {\"type\":\"DELETED\",\n\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"8\"}}}\n",
	`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (8)","reason":"Expired","code":410}}` + "\n\n",
}

// wantStream is kjson's reading of stream, event by event.
func wantStream(t *testing.T, drop bool) []Event {
	t.Helper()
	var out []Event
	for _, s := range stream {
		ev, err := oracle([]byte(s), drop)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// decodeAll decodes events until an error, which it returns with them.
func decodeAll(d *Decoder) ([]Event, error) {
	var out []Event
	for {
		var ev Event
		if err := d.Decode(&ev); err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// splitReader returns a, then b, then io.EOF.
type splitReader struct{ parts [][]byte }

func (r *splitReader) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && len(r.parts[0]) == 0 {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	return n, nil
}

// Events split across reads at every byte boundary decode the same.
func TestStreamSplitAtEveryByte(t *testing.T) {
	data := []byte(strings.Join(stream, ""))
	for _, drop := range []bool{false, true} {
		want := wantStream(t, drop)
		check := func(name string, r io.Reader) {
			got, err := decodeAll(NewDecoder(r, Options{DropManagedFields: drop}))
			if err != io.EOF {
				t.Fatalf("%s: error %v", name, err)
			}
			if !equal(got, want) {
				t.Fatalf("%s:\ngot  %#v\nwant %#v", name, got, want)
			}
		}
		check("one byte at a time", iotest.OneByteReader(bytes.NewReader(data)))
		for i := range data {
			check(fmt.Sprintf("split at %d", i), &splitReader{parts: [][]byte{
				bytes.Clone(data[:i]), bytes.Clone(data[i:]),
			}})
		}
	}
}

// A stream that stops inside an event is io.ErrUnexpectedEOF after the
// events before it; one that stops between events (whitespace or not) is
// io.EOF.
func TestStreamEndingMidEvent(t *testing.T) {
	first, second := stream[1], stream[2]
	data := first + "\n" + second
	for i := range len(data) + 1 {
		prefix := data[:i]
		got, err := decodeAll(NewDecoder(iotest.HalfReader(strings.NewReader(prefix)), Options{}))
		wantN, wantErr := 0, io.ErrUnexpectedEOF
		switch {
		case i == 0:
			wantErr = io.EOF
		case i < len(first):
		case i <= len(first)+1:
			wantN, wantErr = 1, io.EOF
		case i < len(data):
			wantN = 1
		default:
			wantN, wantErr = 2, io.EOF
		}
		if len(got) != wantN || err != wantErr {
			t.Errorf("prefix of %d bytes: %d events, error %v; want %d, %v", i, len(got), err, wantN, wantErr)
		}
	}
}

// errReader fails with err after sending data.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A read error is returned as it is (the watch machinery compares it
// with io.EOF and asks whether it is a network EOF or timeout), and stays.
func TestReadErrorUnchanged(t *testing.T) {
	boom := errors.New("connection reset by peer")
	for _, data := range []string{"", stream[1], stream[1] + `{"type":"ADD`} {
		d := NewDecoder(&errReader{data: []byte(data), err: boom}, Options{})
		_, err := decodeAll(d)
		if err != boom {
			t.Errorf("%q: error %v, want the reader's", data, err)
		}
		if err := d.Decode(&Event{}); err != boom {
			t.Errorf("%q: then %v", data, err)
		}
	}
	var zero zeroReader
	if err := NewDecoder(&zero, Options{}).Decode(&Event{}); err != io.ErrNoProgress {
		t.Errorf("a reader that returns nothing: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// Malformed input is a SyntaxError naming its offset, and ends the stream;
// an event of the wrong shape is a ValueError, and the next event decodes.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int64
		msg    string
	}{
		{`{"type":"ADDED","object":{"kind":"X","x":[1,}}`, 44, "invalid character '}' looking for beginning of value"},
		{"\n\n{\"type\":\"ADDED\",\"object\":{\"kind\":\"X\",\"s\":\"a\x01\"}}", 45, `invalid character '\x01' in string literal`},
		{`{"type":"ADDED","object":{"kind":"X","s":"\q"}}`, 43, `invalid character 'q' in string escape code`},
		{`{"type":"ADDED","object":{"n":01}}`, 31, "invalid character '1' after object key:value pair"},
		{`{"type":"ADDED","object":{"n":tru}}`, 33, "invalid character '}' in literal true"},
		{`[1,2]`, 0, "watch event is not a JSON object"},
		{`{"type":"ADDED"}]`, 16, "invalid character ']' looking for beginning of value"},
		{strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001), 50000, "exceeded max depth"},
	} {
		d := NewDecoder(strings.NewReader(tc.in), Options{})
		_, err := decodeAll(d)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tc.offset || !strings.HasPrefix(se.Msg, tc.msg) {
			t.Errorf("%.60q: %v, want %q at offset %d", tc.in, err, tc.msg, tc.offset)
		}
		if again := d.Decode(&Event{}); again != err {
			t.Errorf("%.60q: then %v", tc.in, again)
		}
	}
	for _, in := range []string{
		`{"type":1,"object":{"kind":"X"}}`,
		`{"type":"ADDED","object":[1]}`,
		`{"type":"ADDED","object":{"kind":"X","n":1e400}}`,
		`{"type":"ADDED","object":{"kind":"X","metadata":{"managedFields":[-1e999]}}}`,
	} {
		d := NewDecoder(strings.NewReader(in+stream[1]), Options{DropManagedFields: true})
		var ev Event
		err := d.Decode(&ev)
		var ve *ValueError
		if !errors.As(err, &ve) || ev.Object != nil {
			t.Errorf("%s: %v, event %v", in, err, ev)
		}
		if err := d.Decode(&ev); err != nil || ev.Type != "MODIFIED" {
			t.Errorf("%s: the next event: %v %v", in, ev, err)
		}
	}
}

// Depth is counted as encoding/json counts it: 10000 levels, the event
// included, decode; one more does not.
func TestDepthLimit(t *testing.T) {
	for _, drop := range []bool{false, true} {
		for levels, ok := range map[int]bool{9998: true, 9999: false} {
			// event, object, metadata, managedFields array: 3 + levels.
			in := `{"type":"ADDED","object":{"metadata":{"managedFields":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}}}`
			_, err := decodeOne(strings.NewReader(in), drop)
			if (err == nil) != ok {
				t.Errorf("drop=%v, %d levels: %v", drop, levels+2, err)
			}
		}
	}
}

// An object of a megabyte decodes through small reads; an event over the
// limit is an error naming it, whatever the reads.
func TestLargeEvents(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	in := `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + big + `","b":"x\n` + big[:1000] + `"},"binaryData":[` + strings.Repeat(`"AAAA",`, 10000) + `"A"]}}` + "\n"
	for name, r := range readers {
		got, err := decodeOne(r([]byte(in)), true)
		want, _ := oracle([]byte(in), true)
		if err != nil || !equal(got, want) {
			t.Fatalf("%s: %v", name, err)
		}
		d := NewDecoder(r([]byte(stream[1]+in)), Options{MaxEventBytes: 1 << 20})
		var ev Event
		if err := d.Decode(&ev); err != nil {
			t.Fatalf("%s: the small event: %v", name, err)
		}
		err = d.Decode(&ev)
		var tl *tooLargeError
		if !errors.Is(err, ErrEventTooLarge) || !errors.As(err, &tl) || tl.Offset != int64(len(stream[1])) || !strings.Contains(err.Error(), "exceeds 1048576 bytes") {
			t.Errorf("%s: %v", name, err)
		}
		if len(d.buf) > 1<<20+2*minRead {
			t.Errorf("%s: buffer grew to %d bytes", name, len(d.buf))
		}
	}
	// The limit is the event's size: as large decodes, a byte more fails.
	ev := stream[1]
	for name, r := range readers {
		for limit, ok := range map[int]bool{len(ev): true, len(ev) - 1: false} {
			_, err := decodeAll(NewDecoder(r([]byte(ev+"\n"+ev)), Options{MaxEventBytes: limit}))
			if (err == io.EOF) != ok {
				t.Errorf("%s: an event of %d bytes, limit %d: %v", name, len(ev), limit, err)
			}
		}
	}
	// Whitespace between events is not part of either.
	d := NewDecoder(strings.NewReader(strings.Repeat(" \n", 1000)+stream[1]+strings.Repeat("\n", 3000)), Options{MaxEventBytes: 1000})
	if evs, err := decodeAll(d); len(evs) != 1 || err != io.EOF {
		t.Errorf("whitespace: %d events, %v", len(evs), err)
	}
}

// Raw is the event just decoded, as sent.
func TestRaw(t *testing.T) {
	d := NewDecoder(iotest.OneByteReader(strings.NewReader(strings.Join(stream, ""))), Options{DropManagedFields: true})
	for i, s := range stream {
		if err := d.Decode(&Event{}); err != nil {
			t.Fatal(err)
		}
		if got, want := string(d.Raw()), strings.TrimSpace(s); got != want {
			t.Errorf("event %d: raw %q, want %q", i, got, want)
		}
	}
}

// An event one byte over MaxEventBytes is an error however the stream is
// read, the first event included: not only when a later read is needed.
func TestEventLimitIsExact(t *testing.T) {
	ev := stream[1]
	for name, r := range readers {
		for _, tail := range []string{"", "\n", "\n" + ev} {
			for limit, ok := range map[int]bool{len(ev): true, len(ev) - 1: false, len(ev) - 2: false} {
				d := NewDecoder(r([]byte(ev+tail)), Options{MaxEventBytes: limit})
				err := d.Decode(&Event{})
				if ok && err != nil {
					t.Errorf("%s tail %q: an event of %d bytes, limit %d: %v", name, tail, len(ev), limit, err)
				}
				if !ok && !errors.Is(err, ErrEventTooLarge) {
					t.Errorf("%s tail %q: an event of %d bytes, limit %d: %v, want ErrEventTooLarge", name, tail, len(ev), limit, err)
				}
			}
		}
	}
}

// A limit as large as an int can be is no limit, not a panic.
func TestHugeEventLimitIsNoLimit(t *testing.T) {
	for _, limit := range []int{math.MaxInt, math.MaxInt - 1, math.MaxInt / 2} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("MaxEventBytes %d: panic %v", limit, p)
				}
			}()
			evs, err := decodeAll(NewDecoder(strings.NewReader(strings.Join(stream, "")), Options{MaxEventBytes: limit}))
			if len(evs) != len(stream) || err != io.EOF {
				t.Errorf("MaxEventBytes %d: %d events, %v", limit, len(evs), err)
			}
		}()
	}
}

// An event over the 16 MiB default is an error, and the decoder holds no
// more than the limit while finding out.
func TestDefaultEventLimit(t *testing.T) {
	big := `{"type":"ADDED","object":{"kind":"ConfigMap","data":{"a":"` + strings.Repeat("x", defaultMaxEventBytes) + `"}}}`
	for _, name := range []string{"whole", "halves"} {
		d := NewDecoder(readers[name]([]byte(stream[1]+big)), Options{})
		if err := d.Decode(&Event{}); err != nil {
			t.Fatal(err)
		}
		err := d.Decode(&Event{})
		var tl *tooLargeError
		if !errors.As(err, &tl) || tl.Limit != defaultMaxEventBytes || tl.Offset != int64(len(stream[1])) {
			t.Errorf("%s: %v", name, err)
		}
		if len(d.buf) > defaultMaxEventBytes+2*minRead {
			t.Errorf("%s: buffer of %d bytes", name, len(d.buf))
		}
		if again := d.Decode(&Event{}); again != err {
			t.Errorf("%s: then %v", name, again)
		}
	}
}

// After a large event the buffer is given back once the bytes read with
// it are decoded, also when the stream keeps coming in large reads (a
// relist: the API server sends the list as fast as it can, and a read
// returns as much as the buffer takes). Until then it holds stream bytes
// not yet decoded, which is not retention.
func TestBufferShrinksAfterLargeEvent(t *testing.T) {
	big := `{"type":"ADDED","object":{"kind":"ConfigMap","data":{"a":"` + strings.Repeat("x", 4<<20) + `"}}}`
	small := strings.Repeat(stream[1]+"\n", 100000) // about 12 MiB of small events
	for _, name := range []string{"whole", "halves"} {
		d := NewDecoder(readers[name]([]byte(big+small)), Options{})
		if err := d.Decode(&Event{}); err != nil {
			t.Fatal(err)
		}
		grown := len(d.buf)
		if grown <= shrinkAbove {
			t.Fatalf("%s: the buffer did not grow (%d bytes)", name, grown)
		}
		// More than the large event's last read can have brought.
		n := 0
		for ; n < 60000; n++ {
			if err := d.Decode(&Event{}); err != nil {
				t.Fatal(err)
			}
		}
		if len(d.buf) > shrinkAbove {
			t.Errorf("%s: %d small events after a 4 MiB one, the buffer still holds %d bytes (grown to %d)", name, n, len(d.buf), grown)
		}
		evs, err := decodeAll(d)
		if err != io.EOF || len(evs) != 100000-n {
			t.Fatalf("%s: %d events, %v", name, len(evs), err)
		}
	}
}

// A reader that returns data with an error in the same call: the data is
// decoded, then the error is returned unchanged (io.EOF between events,
// io.ErrUnexpectedEOF inside one).
func TestDataReturnedWithAnError(t *testing.T) {
	boom := errors.New("boom")
	ev := stream[1]
	for _, tc := range []struct {
		data    string
		err     error
		n       int
		wantErr error
	}{
		{ev, io.EOF, 1, io.EOF},
		{ev + "\n \n", io.EOF, 1, io.EOF},
		{ev + ev[:10], io.EOF, 1, io.ErrUnexpectedEOF},
		{ev, boom, 1, boom},
		{ev + ev[:10], boom, 1, boom},
		{ev + "\n", boom, 1, boom},
	} {
		for _, chunk := range []int{1, 7, len(tc.data)} {
			r := &withErr{data: []byte(tc.data), chunk: chunk, err: tc.err}
			d := NewDecoder(r, Options{})
			evs, err := decodeAll(d)
			if len(evs) != tc.n || err != tc.wantErr {
				t.Errorf("%q+%v chunk %d: %d events, %v; want %d, %v", tc.data, tc.err, chunk, len(evs), err, tc.n, tc.wantErr)
			}
			if r.after > 0 {
				t.Errorf("%q+%v chunk %d: read %d more times after the error", tc.data, tc.err, chunk, r.after)
			}
		}
	}
}

// withErr returns err with its last chunk of data.
type withErr struct {
	data  []byte
	chunk int
	err   error
	after int
}

func (r *withErr) Read(p []byte) (int, error) {
	if r.data == nil {
		r.after++
		return 0, r.err
	}
	n := min(r.chunk, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if len(r.data) == 0 {
		r.data = nil
		return n, r.err
	}
	return n, nil
}

// Nesting at the limit decodes, one more is a SyntaxError, in built and in
// skipped values, objects and arrays alike, split across reads.
func TestDepthAtLimitInBuiltAndSkippedValues(t *testing.T) {
	nest := func(levels int, obj bool) string {
		if obj {
			return strings.Repeat(`{"a":`, levels) + `1` + strings.Repeat(`}`, levels)
		}
		return strings.Repeat(`[`, levels) + strings.Repeat(`]`, levels)
	}
	for _, obj := range []bool{false, true} {
		// event + object = 2 levels; "v" nested n more.
		for n, ok := range map[int]bool{9998: true, 9999: false} {
			for _, in := range []string{
				`{"type":"ADDED","object":{"v":` + nest(n, obj) + `}}`,
				`{"type":"ADDED","extra":` + nest(n+1, obj) + `,"object":{}}`,
				`{"type":"ADDED","object":{"metadata":{"managedFields":` + nest(n-1, obj) + `}}}`,
			} {
				for name, r := range map[string]io.Reader{"whole": strings.NewReader(in), "bytewise": iotest.OneByteReader(strings.NewReader(in))} {
					_, err := decodeOne(r, true)
					var se *SyntaxError
					if ok && err != nil || !ok && (!errors.As(err, &se) || se.Msg != "exceeded max depth") {
						t.Errorf("obj=%v, %d levels, %s, %.50s: %v", obj, n+2, name, in, err)
					}
				}
				_, kerr := oracle([]byte(in), true)
				if (kerr == nil) != ok {
					t.Errorf("obj=%v, %d levels, %.50s: kjson %v", obj, n+2, in, kerr)
				}
			}
		}
	}
}

// With ManagedFieldsRaw, managedFields is its exact text (escaped keys,
// spaces and all), however the reads split it; nothing else changes.
func TestManagedFieldsRawKeepsTheirText(t *testing.T) {
	mf := `[{"manager":"ops-bot","operation":"Apply","apiVersion":"apps/v1","time":"2026-12-07T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":` +
		`{"f:metadata":{"f:labels":{".":{},"f:a/b~c":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{}}}}}},` +
		`{"manager":"kubectl","operation":"Update","subresource":"scale","fieldsV1": {"f:spec":{"f:replicas":{}}} }]`
	ev := `{"type":"MODIFIED","object":{"kind":"Deployment","metadata":{"name":"web","managedFields":` + mf + `},"spec":{"replicas":3}}}` + "\n"
	data := []byte(ev + ev)
	check := func(name string, r io.Reader) {
		got, err := decodeAll(NewDecoder(r, Options{ManagedFieldsRaw: true}))
		if err != io.EOF || len(got) != 2 {
			t.Fatalf("%s: %d events, error %v", name, len(got), err)
		}
		for _, e := range got {
			md := e.Object["metadata"].(map[string]any)
			if md["managedFields"] != mf {
				t.Fatalf("%s: managedFields\n got %#v\nwant %#v", name, md["managedFields"], mf)
			}
			if e.Object["spec"].(map[string]any)["replicas"] != int64(3) || md["name"] != "web" {
				t.Fatalf("%s: the rest of the object: %#v", name, e.Object)
			}
		}
	}
	check("whole", bytes.NewReader(data))
	check("one byte at a time", iotest.OneByteReader(bytes.NewReader(data)))
	for i := range data {
		check(fmt.Sprintf("split at %d", i), &splitReader{parts: [][]byte{bytes.Clone(data[:i]), bytes.Clone(data[i:])}})
	}
	// DropManagedFields wins over ManagedFieldsRaw.
	got, _ := decodeAll(NewDecoder(bytes.NewReader(data), Options{ManagedFieldsRaw: true, DropManagedFields: true}))
	if _, ok := got[0].Object["metadata"].(map[string]any)["managedFields"]; ok {
		t.Error("managedFields kept with DropManagedFields")
	}
	// Bad JSON inside is still an error.
	bad := strings.Replace(ev, `"f:replicas":{}`, `"f:replicas":}`, 1)
	if _, err := decodeAll(NewDecoder(strings.NewReader(bad), Options{ManagedFieldsRaw: true})); err == io.EOF || err == nil {
		t.Errorf("a syntax error inside managedFields: %v", err)
	}
}
