package wirejson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

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

// audit2Stream checks a stream of events (pieces of data separated by NUL
// bytes) decoded by one Decoder, read in the chunks sizes gives, against
// kjson decoding each piece on its own: every piece kjson decodes must come
// out the same, every piece kjson rejects as a value of the wrong type must
// be a ValueError after which the stream goes on. Pieces that are not a
// JSON object (syntax errors end the stream) are left out.
func audit2Stream(t *testing.T, data, sizes []byte, drop bool) {
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
func FuzzAudit2StreamMatchesKJSON(f *testing.F) {
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
			audit2Stream(t, data, sizes, drop)
		}
	})
}

// Strings that collide in an intern slot come out as themselves, in the
// same event and across events.
func TestAudit2InternCollisions(t *testing.T) {
	// Find strings of the same length that share a slot.
	bySlot := map[uint32][]string{}
	var same []string
	for i := 0; len(same) < 5 && i < 1<<20; i++ {
		s := "k" + strings.Repeat("0", 8) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26)) + strings.Repeat("0", 8)
		h := hash([]byte(s))
		bySlot[h] = append(bySlot[h], s)
		if len(bySlot[h]) == 5 {
			same = bySlot[h]
		}
	}
	if len(same) < 5 {
		t.Fatal("no five strings share a slot")
	}
	var evs []string
	for r := range 3 {
		var b strings.Builder
		b.WriteString(`{"type":"ADDED","object":{`)
		for i, s := range same {
			if i > 0 {
				b.WriteByte(',')
			}
			// keys and values from the same colliding set, rotated
			b.WriteString(`"` + s + `":"` + same[(i+r)%len(same)] + `"`)
		}
		b.WriteString(`}}`)
		evs = append(evs, b.String())
	}
	audit2Stream(t, []byte(strings.Join(evs, "\x00")), nil, false)
	audit2Stream(t, []byte(strings.Join(evs, "\x00")), []byte{3, 1}, false)
}

// Integers at every edge come out as kjson gives them: int64 when the
// literal is an integer that fits, float64 otherwise, -0 an int64 0 and
// -0.0 a negative zero.
func TestAudit2NumberEdges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`0`, int64(0)}, {`-0`, int64(0)}, {`-0.0`, math.Copysign(0, -1)}, {`0.0`, float64(0)},
		{`100`, int64(100)}, {`1e2`, float64(100)}, {`1E+2`, float64(100)}, {`100.0`, float64(100)},
		{`9223372036854775807`, int64(math.MaxInt64)}, {`9223372036854775808`, float64(1 << 63)},
		{`-9223372036854775808`, int64(math.MinInt64)}, {`-9223372036854775809`, float64(-(1 << 63))},
		{`9999999999999999999`, float64(9999999999999999999)}, {`18446744073709551615`, float64(1 << 64)},
		{`18446744073709551616`, float64(1 << 64)}, {`99999999999999999999`, 1e20},
		{`9007199254740993`, int64(9007199254740993)}, {`-9007199254740993`, int64(-9007199254740993)},
		{`1e308`, 1e308}, {`1e-324`, float64(0)}, {`-1e-324`, math.Copysign(0, -1)},
		{`0.1e-1`, 0.01}, {`123456789012345678901234567890e-10`, 12345678901234567890.1234567890},
	} {
		in := `{"object":{"n":` + tc.in + `}}`
		want, err := oracle([]byte(in), false)
		if err != nil {
			t.Fatalf("%s: kjson: %v", tc.in, err)
		}
		if !equal(want.Object["n"], tc.want) {
			t.Fatalf("%s: kjson gives %#v, the test expects %#v", tc.in, want.Object["n"], tc.want)
		}
		checkEquivalent(t, []byte(in))
	}
	// Out of float64 range, with and without an exponent, and an exponent
	// too long for any integer type: an error, never a value.
	for _, in := range []string{`1e309`, `-1e309`, `1` + strings.Repeat("0", 309), `1e` + strings.Repeat("9", 400), `-1` + strings.Repeat("0", 400) + `.5`} {
		checkEquivalent(t, []byte(`{"object":{"n":`+in+`}}`))
		checkEquivalent(t, []byte(`{"object":{"metadata":{"managedFields":[`+in+`]}}}`))
	}
}
