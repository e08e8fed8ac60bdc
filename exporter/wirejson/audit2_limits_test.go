package wirejson

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// An event one byte over MaxEventBytes is an error however the stream is
// read, the first event included: not only when a later read is needed.
func TestAudit2LimitIsExact(t *testing.T) {
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
func TestAudit2HugeLimit(t *testing.T) {
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
func TestAudit2DefaultLimit(t *testing.T) {
	big := `{"type":"ADDED","object":{"kind":"ConfigMap","data":{"a":"` + strings.Repeat("x", DefaultMaxEventBytes) + `"}}}`
	for _, name := range []string{"whole", "halves"} {
		d := NewDecoder(readers[name]([]byte(stream[1]+big)), Options{})
		if err := d.Decode(&Event{}); err != nil {
			t.Fatal(err)
		}
		err := d.Decode(&Event{})
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Limit != DefaultMaxEventBytes || tl.Offset != int64(len(stream[1])) {
			t.Errorf("%s: %v", name, err)
		}
		if len(d.buf) > DefaultMaxEventBytes+2*minRead {
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
func TestAudit2BufferShrinksAfterLargeEvent(t *testing.T) {
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
func TestAudit2DataWithError(t *testing.T) {
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
func TestAudit2DepthAtLimit(t *testing.T) {
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
	_ = bytes.MinRead
}
