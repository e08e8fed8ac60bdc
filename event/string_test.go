package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// jsonString is encoding/json's quoting of s without HTML escaping.
func jsonString(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
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
