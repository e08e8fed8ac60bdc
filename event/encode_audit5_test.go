package event

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// audit5JSONString is encoding/json's quoting of s without HTML escaping.
func audit5JSONString(t testing.TB, s string) []byte {
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

// TestAudit5TimeErrorIsEncodingJSONs: an out-of-range time fails with the
// error encoding/json (and Marshal before the drain-cpu change) gives:
// "json: error calling MarshalJSON for type time.Time: Time.MarshalJSON:
// year outside of range [0,9999]". The change's comment says AppendText
// gives "the same year range error"; it names Time.AppendText instead.
func TestAudit5TimeErrorIsEncodingJSONs(t *testing.T) {
	for _, y := range []int{10000, -1} {
		e := base(&ChangeData{Object: map[string]any{}})
		e.Time = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		_, werr := reflectMarshal(e)
		_, gerr := Marshal(e)
		if werr == nil || gerr == nil {
			t.Fatalf("year %d: errors %v / %v", y, gerr, werr)
		}
		if gerr.Error() != werr.Error() {
			t.Errorf("year %d: Marshal error %q, encoding/json (and the encoder before drain-cpu) says %q", y, gerr, werr)
		}
	}
}

// TestAudit5AppendStringLengths: plain, escaped and non-ASCII bytes at
// every position of strings 0..40 bytes long, with a second special byte
// at every other position (two specials, so that one found in the slow
// path does not mask a second skipped by the word loop afterwards).
func TestAudit5AppendStringLengths(t *testing.T) {
	specials := []string{"\x00", "\x1f", "\"", "\\", "\x7f", "\x80", "\xff", "é", "\u2028", "\u2029", "\xe2\x80", "\xe2", "🙂", "<", "&", ">", "\t", "\n"}
	for n := 0; n <= 40; n++ {
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j += 1 {
				for _, a := range specials {
					for _, b := range []string{"\"", "\x00", "\xff", "\u2028", "\\"} {
						s := []byte(strings.Repeat("x", n))
						str := string(s[:i]) + a + string(s[i+1:j]) + b + string(s[j+1:])
						got := appendString(nil, str)
						if want := audit5JSONString(t, str); !bytes.Equal(got, want) {
							t.Fatalf("%q: got %s, want %s", str, got, want)
						}
					}
				}
			}
		}
	}
}

// FuzzAudit5AppendString: appendString is encoding/json's quoting for any
// bytes, after any prefix already in the buffer.
func FuzzAudit5AppendString(f *testing.F) {
	for _, s := range []string{"", "a", "abcdefg", "abcdefgh", "abcdefghi", strings.Repeat("a", 15), strings.Repeat("b", 16), strings.Repeat("c", 17),
		"abcdefg\xff", "abcdefgh\u2028", "\xe2\x80\xa8abcdefgh", "abcdefg\xe2\x80\xa9", "abcdefgé", "abcdefghijklmno\"", "<>&<>&<>&", "\x00\x01\x02\x03\x04\x05\x06\x07\x08"} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, s string, pre int) {
		pre &= 31
		prefix := bytes.Repeat([]byte{'p'}, pre)
		got := appendString(append([]byte(nil), prefix...), s)
		want := append(prefix, audit5JSONString(t, s)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%q (valid utf8 %v): got %s, want %s", s, utf8.ValidString(s), got, want)
		}
	})
}

// FuzzAudit5AppendMarshal: AppendMarshal into a dirty, reused buffer is
// prefix + Marshal, which is encoding/json's output, for any strings in
// the envelope, keys and values.
func FuzzAudit5AppendMarshal(f *testing.F) {
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

// TestAudit5AppendMarshalConcurrent: AppendMarshal and Marshal share the
// encoder pool; an encoder put back by AppendMarshal must not carry the
// caller's buffer, which Marshal on another goroutine would then write
// into.
func TestAudit5AppendMarshalConcurrent(t *testing.T) {
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
