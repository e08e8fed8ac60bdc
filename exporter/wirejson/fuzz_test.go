package wirejson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	kjson "sigs.k8s.io/json"
)

// kjsonEvent is what exporter decoded watch events into before this
// package: the oracle.
type kjsonEvent struct {
	Type   string         `json:"type"`
	Object map[string]any `json:"object"`
}

// oracle decodes one event as kjson does, then drops managedFields as the
// informer's transform does.
func oracle(data []byte, drop bool) (Event, error) {
	var ev kjsonEvent
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &ev); err != nil {
		return Event{}, err
	}
	if drop {
		if md, ok := ev.Object["metadata"].(map[string]any); ok {
			delete(md, "managedFields")
		}
	}
	return Event{Type: ev.Type, Object: ev.Object}, nil
}

// decodeOne decodes data as a stream that must hold exactly one event.
func decodeOne(r io.Reader, drop bool) (Event, error) {
	d := NewDecoder(r, Options{DropManagedFields: drop})
	var ev Event
	if err := d.Decode(&ev); err != nil {
		return Event{}, err
	}
	var next Event
	if err := d.Decode(&next); err != io.EOF {
		return Event{}, fmt.Errorf("after the event: %v", err)
	}
	return ev, nil
}

// readers are the ways a stream may arrive.
var readers = map[string]func([]byte) io.Reader{
	"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
	"bytewise": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
	"data+eof": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	"halves":   func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
}

// checkEquivalent fails unless the decoder and kjson agree on data: both
// fail, or both give the same event.
func checkEquivalent(t *testing.T, data []byte) {
	t.Helper()
	for _, drop := range []bool{false, true} {
		want, werr := oracle(data, drop)
		for name, r := range readers {
			got, gerr := decodeOne(r(data), drop)
			if (gerr != nil) != (werr != nil) {
				t.Fatalf("%s drop=%v: error %v, kjson's %v\ninput %q", name, drop, gerr, werr, data)
			}
			if gerr == nil && !equal(got, want) {
				t.Fatalf("%s drop=%v:\ngot  %#v\nwant %#v\ninput %q", name, drop, got, want, data)
			}
		}
	}
}

// equal is reflect.DeepEqual that also tells -0.0 from 0.
func equal(a, b any) bool {
	return reflect.DeepEqual(a, b) && signsEqual(reflect.ValueOf(a), reflect.ValueOf(b))
}

func signsEqual(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Float64:
		return math.Signbit(a.Float()) == math.Signbit(b.Float())
	case reflect.Interface, reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return signsEqual(a.Elem(), b.Elem())
	case reflect.Slice:
		for i := range a.Len() {
			if !signsEqual(a.Index(i), b.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		for _, k := range a.MapKeys() {
			if !signsEqual(a.MapIndex(k), b.MapIndex(k)) {
				return false
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if !signsEqual(a.Field(i), b.Field(i)) {
				return false
			}
		}
	}
	return true
}

// hostile are values meant to catch every difference from kjson.
var hostile = []string{
	// numbers
	`9007199254740991`, `9007199254740992`, `9007199254740993`, `-9007199254740991`, `-9007199254740992`, `-9007199254740993`,
	`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `-9223372036854775809`,
	`18446744073709551616`, `123456789012345678901234567890`, `1e400`, `-1e400`, `1e-400`,
	`-0`, `-0.0`, `0.1`, `1E2`, `1e+2`, `1e-2`, `1.0`, `1.5e308`, `2e308`, `0e0`, `-0e-0`,
	`1` + strings.Repeat("0", 308), `1` + strings.Repeat("0", 309), `0.` + strings.Repeat("0", 400) + `1`,
	`1e99999999999999999999`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `1.e5`, `-01`, `NaN`, `Infinity`,
	// strings
	`"\u0000"`, `"\ud800"`, `"\udc00\ud800"`, `"\ud83d\ude00"`, `"\ud83d\u0041"`, `"\ud83dx"`, `"\uDBFF\uDFFF"`,
	`"a\/b\\c\"d\b\f\n\r\t"`, `"\x"`, `"\'"`, `"\u12"`, `"\u12g4"`, "\"\xff\xfe\"", "\"\xe2\x82\"", "\"\xed\xa0\x80\"",
	"\"é€😀\"", "\"tab\there\"", "\"nl\nhere\"", "\"\x7f\"", `"unterminated`, `"` + strings.Repeat("x", 5000) + `"`,
	// literals and structure
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `[]`, `{}`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{,}`, `[,1]`,
	`{"a":1 "b":2}`, `[1 2]`, `{"a":1}}`, `{"":1,"":2}`, `{"a/b":1,"a~b":2,"~0~1":3}`, `{"a":1,"a":{"b":2},"a":[3]}`,
	`{"\u0061":1,"a":2}`, `{"k\ud800":1}`, `[[[[[]]]]]`, `{ "a" : [ 1 , { } ] }`, "{\t\"a\"\r:\n1 }", "[1\v]",
	strings.Repeat("[", 9997) + strings.Repeat("]", 9997), strings.Repeat("[", 9998) + strings.Repeat("]", 9998),
	strings.Repeat(`{"a":`, 9997) + `1` + strings.Repeat("}", 9997), strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
}

// events are whole events in the shapes the API server sends, and not.
var events = []string{
	``, ` `, "\n\n", `null`, ` null `, `{}`, `[]`, `"x"`, `1`, `true`, `{"type":"ADDED"}`, `{"object":null}`,
	`{"type":null,"object":{"kind":"X"}}`, `{"type":1,"object":{}}`, `{"type":"ADDED","object":[]}`,
	`{"type":"ADDED","object":"x"}`, `{"type":"ADDED","object":1e400}`, `{"type":"A","type":"B","type":null}`,
	`{"Type":"ADDED","Object":{"kind":"X"}}`, `{"t\u0079pe":"ADDED","\u006fbject":{"kind":"X"}}`,
	`{"object":{"a":1,"b":{"c":1}},"object":{"b":{"d":2},"e":3}}`, `{"object":{"a":1},"object":null,"object":{"b":2}}`,
	`{"type":"ADDED","extra":1e400,"object":{"kind":"X"}}`, `{"type":"ADDED","extra":[1,{"x":nul}],"object":{}}`,
	`{"type":"ADDED","object":{"kind":"X"}} x`, `{"type":"ADDED","object":{"kind":"X"}}{`, `{"type":"ADDED","object":{"kind":"X"}`,
	// managedFields everywhere
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[{"manager":"m","fieldsV1":{"f:a":{}}}],"name":"a"}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"name":"a","managedFields":[{"manager":"m"}]}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[]}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":null}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[1e400]}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[1e-400, 123456789012345678901234567890]}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[1,}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":"\ud800\x"}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managed\u0046ields":[1],"name":"a"}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"managedFields":[1],"managedFields":[2]}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":{"a":1},"metadata":{"managedFields":[2],"b":2}}}`,
	`{"type":"ADDED","object":{"kind":"E","metadata":"managedFields"}}`, `{"type":"ADDED","object":{"kind":"E","metadata":[{"managedFields":1}]}}`,
	`{"type":"ADDED","object":{"kind":"X","spec":{"managedFields":[1]},"metadata":{"name":"managedFields","labels":{"managedFields":"x"},"x":{"managedFields":1}},"managedFields":2}}`,
	`{"managedFields":1,"metadata":{"managedFields":2},"type":"ADDED","object":{"kind":"X","metadata":{"managedFields":[{"a":{"b":{"c":[[]]}}}]}}}`,
	`{"type":"ADDED","object":{"items":[{"metadata":{"managedFields":[1]}}],"metadata":{"managedFields":[1]}}}`,
	"{ \"type\" : \"ADDED\" ,\n \"object\" : { \"kind\":\"Event\" , \"metadata\" : { \"name\" : \"a\" ,\n \"managedFields\" : [ ] , \"uid\":\"u\" } } }",
	`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}}`,
	`{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}`,
}

func seeds() [][]byte {
	var out [][]byte
	for _, e := range events {
		out = append(out, []byte(e))
	}
	for _, v := range hostile {
		out = append(out, []byte(`{"type":"ADDED","object":{"kind":"X","v":`+v+`}}`))
		out = append(out, []byte(`{"type":"ADDED","object":{"kind":"X","metadata":{"managedFields":`+v+`,"name":"n"}}}`))
		out = append(out, []byte(`{"type":`+v+`}`))
	}
	return out
}

func TestHostileInputsMatchKJSON(t *testing.T) {
	for _, s := range seeds() {
		name := string(s)
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) { checkEquivalent(t, s) })
	}
}

// For arbitrary bytes, the decoder and kjson agree: the same event, or
// both fail.
func FuzzDecodeMatchesKJSON(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEquivalent(t, data)
		// The same bytes as the object's value.
		wrapped := append(append([]byte(`{"type":"MODIFIED","object":{"metadata":{"managedFields":[],"x":`), data...), `},"v":`...)
		wrapped = append(append(wrapped, data...), "}}"...)
		checkEquivalent(t, wrapped)
	})
}

// chunkReader hands out data in the chunk sizes of sizes (cycled; a zero
// size is a read that returns nothing), and with the last bytes io.EOF in
// the same call when eofWithData is set.
type chunkReader struct {
	data        []byte
	sizes       []byte
	i           int
	eofWithData bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)])
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if len(r.data) == 0 && r.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// checkStreamMatchesKJSON checks a stream of events (pieces of data separated by NUL
// bytes) decoded by one Decoder, read in the chunks sizes gives, against
// kjson decoding each piece on its own: every piece kjson decodes must come
// out the same, every piece kjson rejects as a value of the wrong type must
// be a ValueError after which the stream goes on. Pieces that are not a
// JSON object (syntax errors end the stream) are left out.
func checkStreamMatchesKJSON(t *testing.T, data, sizes []byte, drop bool) {
	t.Helper()
	var pieces [][]byte
	for _, p := range bytes.Split(data, []byte{0}) {
		p = bytes.TrimSpace(p)
		if len(p) == 0 || p[0] != '{' || !json.Valid(p) {
			continue
		}
		pieces = append(pieces, p)
	}
	if len(pieces) == 0 {
		return
	}
	var stream []byte
	for i, p := range pieces {
		stream = append(stream, p...)
		if i%2 == 0 {
			stream = append(stream, '\n')
		}
	}
	for _, eofWithData := range []bool{false, true} {
		// Zero-sized reads are fine as long as not 100 of them come in a row.
		d := NewDecoder(&chunkReader{data: stream, sizes: sizes, eofWithData: eofWithData}, Options{DropManagedFields: drop})
		var got []Event
		for i, p := range pieces {
			want, werr := oracle(p, drop)
			var ev Event
			err := d.Decode(&ev)
			if errors.Is(err, io.ErrNoProgress) && bytes.Count(sizes, []byte{0}) > 0 {
				return
			}
			if werr != nil {
				var ve *ValueError
				if !errors.As(err, &ve) {
					t.Fatalf("event %d %q: error %v, want a ValueError (kjson: %v)", i, p, err, werr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("event %d %q: %v", i, p, err)
			}
			if !equal(ev, want) {
				t.Fatalf("event %d %q:\ngot  %#v\nwant %#v", i, p, ev, want)
			}
			if string(d.Raw()) != string(p) {
				t.Fatalf("event %d: raw %q, want %q", i, d.Raw(), p)
			}
			got = append(got, ev)
		}
		if err := d.Decode(&Event{}); err != io.EOF {
			t.Fatalf("after the last event: %v", err)
		}
		// Events handed out earlier are not changed by decoding later
		// ones (no string shares the decoder's buffer).
		j := 0
		for _, p := range pieces {
			want, werr := oracle(p, drop)
			if werr != nil {
				continue
			}
			if !equal(got[j], want) {
				t.Fatalf("event %q changed after decoding the rest:\ngot  %#v\nwant %#v", p, got[j], want)
			}
			j++
		}
	}
}

// A stream of events, read in arbitrary chunks, decodes as kjson decodes
// each event; strings interned in one event are right in the others.
func FuzzStreamMatchesKJSON(f *testing.F) {
	sep := "\x00"
	f.Add([]byte(strings.Join(stream, sep)), []byte{1, 7, 0, 3})
	f.Add([]byte(strings.Join(events, sep)), []byte{5})
	var hs []string
	for _, v := range hostile {
		hs = append(hs, `{"type":"ADDED","object":{"kind":"X","v":`+v+`,"metadata":{"managedFields":[`+v+`]}}}`)
	}
	f.Add([]byte(strings.Join(hs, sep)), []byte{2, 200, 13})
	// Values that share an intern slot, or nearly so: same length, same
	// first and last eight bytes.
	f.Add([]byte(`{"object":{"aaaaaaaaXaaaaaaaa":"bbbbbbbbXbbbbbbbb","aaaaaaaaYaaaaaaaa":"bbbbbbbbYbbbbbbbb"}}`+sep+
		`{"object":{"aaaaaaaaYaaaaaaaa":"bbbbbbbbXbbbbbbbb","aaaaaaaaXaaaaaaaa":"bbbbbbbbYbbbbbbbb","aaaaaaaaZaaaaaaaa":"bbbbbbbbZbbbbbbbb"}}`), []byte{3})
	f.Add([]byte(`{"type":"ADDED","object":{"s":"\ud83d\ude00\u00e9","k\u0041":"\ud800x"}}`+sep+`{"type":"ADDED","object":{"s":"😀é","kA":"\ufffdx"}}`), []byte{1})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		if len(sizes) > 64 {
			sizes = sizes[:64]
		}
		for _, drop := range []bool{false, true} {
			checkStreamMatchesKJSON(t, data, sizes, drop)
		}
	})
}
