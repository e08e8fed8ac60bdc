package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// audit7Specials are the pieces the differential tests build strings
// from: every byte class the word scan must stop at or pass over (control
// bytes, '"', '\\', DEL, the bytes around 0x20/0x22/0x5c, 0x80, 0xff),
// valid runes of every width, U+2028/U+2029 and their neighbours, and
// invalid UTF-8 (lone continuation, truncated sequences, overlong forms,
// surrogates, beyond U+10FFFF).
var audit7Specials = []string{
	"\x00", "\x01", "\x07", "\b", "\t", "\n", "\f", "\r", "\x1b", "\x1f",
	" ", "!", "\"", "#", "[", "\\", "]", "\x7f", "\x80", "\xbf", "\xc0", "\xc1", "\xf5", "\xff",
	"é", "ÿ", "\u07ff", "\u0800", "日", "\uffff", "\U00010000", "🙂", "\U0010ffff",
	"\u2027", "\u2028", "\u2029", "\u202a",
	"\xe2\x80", "\xe2\x80\xa8\xa8", "\xe2", "\xf0\x9f\x99", "\xf0\x9f", "\xed\xa0\x80", "\xc0\xaf",
	"\xe0\x80\xaf", "\xf4\x90\x80\x80", "\xef\xbf\xbd",
	"<", ">", "&", "~", "/", "a", "Z", "0",
}

// audit7JSON is encoding/json's quoting of s without HTML escaping.
func audit7JSON(tb testing.TB, s string) []byte {
	tb.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func audit7Check(tb testing.TB, s string) {
	tb.Helper()
	want := audit7JSON(tb, s)
	prefix := []byte("prefix")
	got := appendString(bytes.Clone(prefix), s)
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		tb.Fatalf("appendString(%q) = %q, want %q", s, got, want)
	}
}

// Every special piece at every offset of strings 0..80 bytes long, with
// the rest plain ASCII: a multi-byte piece straddles every 8- and 16-byte
// block boundary, and lengths not a multiple of 8 leave tails of every
// size.
func TestAppendStringSpecialAtEveryOffsetTo80Audit7(t *testing.T) {
	for n := 0; n <= 80; n++ {
		for _, sp := range audit7Specials {
			for i := 0; i+len(sp) <= max(n, len(sp)); i++ {
				s := strings.Repeat("a", i) + sp
				s += strings.Repeat("b", max(0, n-len(s)))
				audit7Check(t, s)
			}
		}
	}
}

// Two specials at every pair of offsets in strings of 33 bytes (two
// blocks and a one-byte tail): a scan that resumes after the first one
// at an unaligned offset still finds the second.
func TestAppendStringTwoSpecialsAudit7(t *testing.T) {
	const n = 33
	pieces := []string{"\x00", "\"", "\\", "\x7f", "\x80", "\xff", "é", "日", "\u2028", "🙂", "\xe2\x80"}
	for _, a := range pieces {
		for _, b := range pieces {
			for i := 0; i+len(a) <= n; i++ {
				for j := i + len(a); j+len(b) <= n; j++ {
					s := strings.Repeat("x", i) + a + strings.Repeat("y", j-i-len(a)) + b
					s += strings.Repeat("z", n-len(s))
					audit7Check(t, s)
				}
			}
		}
	}
}

// Random strings of 0..80 bytes from the special pieces and plain ASCII,
// and random strings of arbitrary bytes.
func TestAppendStringRandomAudit7(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := 0; iter < 200000; iter++ {
		n := rng.IntN(81)
		var sb strings.Builder
		switch iter % 3 {
		case 0: // pieces
			for sb.Len() < n {
				if rng.IntN(4) == 0 {
					sb.WriteString(audit7Specials[rng.IntN(len(audit7Specials))])
				} else {
					sb.WriteByte(byte(0x20 + rng.IntN(0x5f)))
				}
			}
		case 1: // arbitrary bytes
			for sb.Len() < n {
				sb.WriteByte(byte(rng.Uint32()))
			}
		default: // mostly high bytes and ASCII around the thresholds
			alphabet := []byte{0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0xa8, 0xa9, 0xe2, 0xff}
			for sb.Len() < n {
				sb.WriteByte(alphabet[rng.IntN(len(alphabet))])
			}
		}
		audit7Check(t, sb.String())
	}
}

// Every pair of bytes in every position of a 17-byte string (a block, a
// byte of tail... and each position of the word a pair can straddle):
// 65,536 byte pairs at a few offsets around the word boundaries.
func TestAppendStringEveryBytePairAudit7(t *testing.T) {
	buf := []byte(strings.Repeat("q", 17))
	for _, off := range []int{0, 6, 7, 8, 14, 15, 16 - 1} {
		for a := 0; a < 256; a++ {
			for b := 0; b < 256; b++ {
				s := bytes.Clone(buf)
				s[off], s[off+1] = byte(a), byte(b)
				audit7Check(t, string(s))
			}
		}
	}
}

// needsCare is zero exactly when all eight bytes are plain ASCII JSON
// writes as is (tested lane by lane for every byte value, with the other
// lanes plain and with them at the edges of plain, 0x20 and 0x7e, whose
// borrows could mask a lane).
func TestNeedsCareEveryByteEveryLaneAudit7(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
	for _, fill := range []byte{'a', 0x20, 0x7e, 0x21, 0x23, 0x5b, 0x5d} {
		for lane := 0; lane < 8; lane++ {
			for c := 0; c < 256; c++ {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[lane] = byte(c)
				x := uint64(0)
				for i := 7; i >= 0; i-- {
					x = x<<8 | uint64(w[i])
				}
				if got := needsCare(x) == 0; got != plain(byte(c)) {
					t.Fatalf("needsCare(% x) zero = %v, want %v", w, got, plain(byte(c)))
				}
			}
		}
	}
}

// Native fuzzing against encoding/json: go test -run XXX -fuzz
// FuzzAppendStringAudit7 ./event/
func FuzzAppendStringAudit7(f *testing.F) {
	for _, sp := range audit7Specials {
		f.Add(sp)
		f.Add(strings.Repeat("a", 7) + sp + strings.Repeat("b", 9))
		f.Add(strings.Repeat("a", 15) + sp + strings.Repeat("b", 17))
	}
	f.Add(strings.Repeat("x", 80))
	f.Fuzz(func(t *testing.T, s string) {
		audit7Check(t, s)
		if !utf8.ValidString(s) {
			return
		}
		// Valid UTF-8 round-trips through encoding/json's decoder.
		var back string
		if err := json.Unmarshal(appendString(nil, s), &back); err != nil || back != s {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
	})
}
