package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonString is encoding/json's quoting of s without HTML escaping.
func jsonString(tb testing.TB, s string) []byte {
	tb.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// TestAppendStringEveryOffset puts every byte that needs care (and its
// neighbours in the byte order) at every position of strings up to 40
// bytes long (two sixteen-byte blocks and a tail), so that a scan that
// looks at several bytes at once misses none of them, at a block or word
// boundary or in the tail.
func TestAppendStringEveryOffset(t *testing.T) {
	specials := []string{"\x00", "\x01", "\x1f", " ", "!", "\"", "#", "[", "\\", "]", "\x7f",
		"\x80", "\xff", "é", "日", "\u2028", "\u2029", "\xe2\x80", "🙂", "<", "&", "~", "/"}
	for n := 0; n <= 40; n++ {
		for i := 0; i < n || (n == 0 && i == 0); i++ {
			for _, sp := range specials {
				s := strings.Repeat("a", i) + sp + strings.Repeat("b", max(0, n-i-1))
				if got, want := appendString([]byte("x"), s), append([]byte("x"), jsonString(t, s)...); !bytes.Equal(got, want) {
					t.Fatalf("%q: got %s, want %s", s, got, want)
				}
			}
		}
	}
	long := strings.Repeat("0123456789abcdef", 64) // 1 KiB, nothing to escape
	if got, want := appendString(nil, long), jsonString(t, long); !bytes.Equal(got, want) {
		t.Fatalf("1 KiB plain string differs")
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("0123456789abcdef", 4) + "-value-x"
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = appendString(buf[:0], s)
	}
}

// BenchmarkAppendStringLong quotes the 900-byte payload of the benchmark's
// ConfigMaps.
func BenchmarkAppendStringLong(b *testing.B) {
	s := strings.Repeat("x", 900)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = appendString(buf[:0], s)
	}
}

// A string near 1 MiB (the API server's object limit) is quoted as
// encoding/json quotes it, with bytes that need care in its first and last
// blocks, across a block boundary in the middle and in its tail.
func TestAppendStringNearOneMiB(t *testing.T) {
	b := []byte(strings.Repeat("0123456789abcdef", (1<<20)/16))
	b = b[:len(b)-5] // not a multiple of 8: a tail after the last word
	copy(b[3:], "\"\n")
	copy(b[len(b)/2-1:], "é\\")
	copy(b[len(b)-4:], "\x01\xff🙂"[:4])
	s := string(b)
	if got, want := appendString(nil, s), jsonString(t, s); !bytes.Equal(got, want) {
		t.Fatalf("a %d-byte string quotes differently from encoding/json", len(s))
	}
}

// jsonStringAsField is encoding/json's quoting of s without HTML escaping,
// as it writes s for a string field of an Event.
func jsonStringAsField(t testing.TB, s string) []byte {
	t.Helper()
	b, err := reflectMarshal(&Event{ID: s})
	if err != nil {
		t.Fatal(err)
	}
	// {"specversion":"","id":<s>,"source":...
	const pre = `{"specversion":"","id":`
	b = bytes.TrimPrefix(b, []byte(pre))
	i := bytes.Index(b, []byte(`,"source":`))
	return b[:i]
}

// TestAppendStringSecondSpecialAfterSlowPath: plain, escaped and
// non-ASCII bytes at every position of strings 0..40 bytes long, with a second special byte
// at every other position (two specials, so that one found in the slow
// path does not mask a second skipped by the word loop afterwards).
func TestAppendStringSecondSpecialAfterSlowPath(t *testing.T) {
	specials := []string{"\x00", "\x1f", "\"", "\\", "\x7f", "\x80", "\xff", "é", "\u2028", "\u2029", "\xe2\x80", "\xe2", "🙂", "<", "&", ">", "\t", "\n"}
	for n := 0; n <= 40; n++ {
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j += 1 {
				for _, a := range specials {
					for _, b := range []string{"\"", "\x00", "\xff", "\u2028", "\\"} {
						s := []byte(strings.Repeat("x", n))
						str := string(s[:i]) + a + string(s[i+1:j]) + b + string(s[j+1:])
						got := appendString(nil, str)
						if want := jsonStringAsField(t, str); !bytes.Equal(got, want) {
							t.Fatalf("%q: got %s, want %s", str, got, want)
						}
					}
				}
			}
		}
	}
}

// FuzzAppendStringAfterPrefix: appendString is encoding/json's quoting
// for any bytes, after any prefix already in the buffer.
func FuzzAppendStringAfterPrefix(f *testing.F) {
	for _, s := range []string{"", "a", "abcdefg", "abcdefgh", "abcdefghi", strings.Repeat("a", 15), strings.Repeat("b", 16), strings.Repeat("c", 17),
		"abcdefg\xff", "abcdefgh\u2028", "\xe2\x80\xa8abcdefgh", "abcdefg\xe2\x80\xa9", "abcdefgé", "abcdefghijklmno\"", "<>&<>&<>&", "\x00\x01\x02\x03\x04\x05\x06\x07\x08"} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, s string, pre int) {
		pre &= 31
		prefix := bytes.Repeat([]byte{'p'}, pre)
		got := appendString(append([]byte(nil), prefix...), s)
		want := append(prefix, jsonStringAsField(t, s)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%q (valid utf8 %v): got %s, want %s", s, utf8.ValidString(s), got, want)
		}
	})
}

// quotingSpecials are the pieces the differential tests build strings
// from: every byte class the word scan must stop at or pass over (control
// bytes, '"', '\\', DEL, the bytes around 0x20/0x22/0x5c, 0x80, 0xff),
// valid runes of every width, U+2028/U+2029 and their neighbours, and
// invalid UTF-8 (lone continuation, truncated sequences, overlong forms,
// surrogates, beyond U+10FFFF).
var quotingSpecials = []string{
	"\x00", "\x01", "\x07", "\b", "\t", "\n", "\f", "\r", "\x1b", "\x1f",
	" ", "!", "\"", "#", "[", "\\", "]", "\x7f", "\x80", "\xbf", "\xc0", "\xc1", "\xf5", "\xff",
	"é", "ÿ", "\u07ff", "\u0800", "日", "\uffff", "\U00010000", "🙂", "\U0010ffff",
	"\u2027", "\u2028", "\u2029", "\u202a",
	"\xe2\x80", "\xe2\x80\xa8\xa8", "\xe2", "\xf0\x9f\x99", "\xf0\x9f", "\xed\xa0\x80", "\xc0\xaf",
	"\xe0\x80\xaf", "\xf4\x90\x80\x80", "\xef\xbf\xbd",
	"<", ">", "&", "~", "/", "a", "Z", "0",
}

// checkAppendString fails unless appendString quotes s after a prefix as
// encoding/json quotes it.
func checkAppendString(tb testing.TB, s string) {
	tb.Helper()
	want := jsonString(tb, s)
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
func TestAppendStringSpecialAtEveryOffsetTo80(t *testing.T) {
	for n := 0; n <= 80; n++ {
		for _, sp := range quotingSpecials {
			for i := 0; i+len(sp) <= max(n, len(sp)); i++ {
				s := strings.Repeat("a", i) + sp
				s += strings.Repeat("b", max(0, n-len(s)))
				checkAppendString(t, s)
			}
		}
	}
}

// Two specials at every pair of offsets in strings of 33 bytes (two
// blocks and a one-byte tail): a scan that resumes after the first one
// at an unaligned offset still finds the second.
func TestAppendStringTwoSpecialsAtEveryPairOfOffsets(t *testing.T) {
	const n = 33
	pieces := []string{"\x00", "\"", "\\", "\x7f", "\x80", "\xff", "é", "日", "\u2028", "🙂", "\xe2\x80"}
	for _, a := range pieces {
		for _, b := range pieces {
			for i := 0; i+len(a) <= n; i++ {
				for j := i + len(a); j+len(b) <= n; j++ {
					s := strings.Repeat("x", i) + a + strings.Repeat("y", j-i-len(a)) + b
					s += strings.Repeat("z", n-len(s))
					checkAppendString(t, s)
				}
			}
		}
	}
}

// Random strings of 0..80 bytes from the special pieces and plain ASCII,
// and random strings of arbitrary bytes.
func TestAppendStringRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := 0; iter < 200000; iter++ {
		n := rng.IntN(81)
		var sb strings.Builder
		switch iter % 3 {
		case 0: // pieces
			for sb.Len() < n {
				if rng.IntN(4) == 0 {
					sb.WriteString(quotingSpecials[rng.IntN(len(quotingSpecials))])
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
		checkAppendString(t, sb.String())
	}
}

// Every pair of bytes in every position of a 17-byte string (a block, a
// byte of tail... and each position of the word a pair can straddle):
// 65,536 byte pairs at a few offsets around the word boundaries.
func TestAppendStringEveryBytePair(t *testing.T) {
	buf := []byte(strings.Repeat("q", 17))
	for _, off := range []int{0, 6, 7, 8, 14, 15, 16 - 1} {
		for a := 0; a < 256; a++ {
			for b := 0; b < 256; b++ {
				s := bytes.Clone(buf)
				s[off], s[off+1] = byte(a), byte(b)
				checkAppendString(t, string(s))
			}
		}
	}
}

// needsCare is zero exactly when all eight bytes are plain ASCII JSON
// writes as is (tested lane by lane for every byte value, with the other
// lanes plain and with them at the edges of plain, 0x20 and 0x7e, whose
// borrows could mask a lane).
func TestNeedsCareEveryByteEveryLane(t *testing.T) {
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
// FuzzAppendString ./event/
func FuzzAppendString(f *testing.F) {
	for _, sp := range quotingSpecials {
		f.Add(sp)
		f.Add(strings.Repeat("a", 7) + sp + strings.Repeat("b", 9))
		f.Add(strings.Repeat("a", 15) + sp + strings.Repeat("b", 17))
	}
	f.Add(strings.Repeat("x", 80))
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s)
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
