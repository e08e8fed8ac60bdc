package sinks_test

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// TestEncodeIntoIsEncode: with a reused buffer, EncodeInto gives what
// Encode gives, in both modes, shrunk or not, and its errors.
func TestEncodeIntoIsEncode(t *testing.T) {
	big := sinktest.Event(1, 1)
	big.Data.(*event.ChangeData).OldObject = map[string]any{"x": strings.Repeat("o", 3000)}
	big.Data.(*event.ChangeData).Object = map[string]any{"metadata": map[string]any{"name": "a/b~c"}, "x": strings.Repeat("n", 3000)}
	bad := sinktest.Event(2, 1)
	bad.Data.(*event.ChangeData).Object = map[string]any{"nan": math.NaN()}
	buf := make([]byte, 0, 16)
	for _, mode := range []string{sinks.ModeStructured, sinks.ModeBinary} {
		for _, limit := range []int{0, 4000, 1000, 10} {
			for name, e := range map[string]*event.Event{"small": sinktest.Event(3, 1), "big": big, "bad": bad} {
				want, werr := sinks.Encode(e, mode, limit)
				buf = append(buf[:0], "stale bytes that must not show"...)
				got, gerr := sinks.EncodeInto(buf, e, mode, limit)
				if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
					t.Fatalf("%s %s limit %d: error %v, Encode says %v", mode, name, limit, gerr, werr)
				}
				if !bytes.Equal(got.Body, want.Body) || !reflect.DeepEqual(got.Headers, want.Headers) {
					t.Fatalf("%s %s limit %d: body %q, Encode says %q", mode, name, limit, got.Body, want.Body)
				}
				if got.Event != e && want.Event == e || got.Event == e && want.Event != e {
					t.Fatalf("%s %s limit %d: shrunk %v, Encode shrunk %v", mode, name, limit, got.Event != e, want.Event != e)
				}
				if gerr == nil && mode == sinks.ModeStructured && cap(buf) >= len(got.Body) && &buf[:1][0] != &got.Body[:1][0] {
					t.Fatalf("%s %s limit %d: body not written into the buffer that had room", mode, name, limit)
				}
			}
		}
	}
}

// FuzzEncodeIntoReusedBufferIsEncode: a buffer reused the way the
// JetStream sink reuses it (the next encoding starts from the last body's
// storage) gives, event after event, what Encode gives: body, headers,
// shrinking and errors, for sizes around the limit and strings needing
// escapes.
func FuzzEncodeIntoReusedBufferIsEncode(f *testing.F) {
	f.Add("v", uint16(10), uint16(3000), uint16(2000), uint16(600), false)
	f.Add("\xff\"\u2028", uint16(5000), uint16(0), uint16(1), uint16(4096), true)
	f.Fuzz(func(t *testing.T, s string, objN, oldN, limit1, limit2 uint16, binary bool) {
		mode := sinks.ModeStructured
		if binary {
			mode = sinks.ModeBinary
		}
		mk := func(i int, n, o uint16) *event.Event {
			e := sinktest.Event(i, 1)
			d := e.Data.(*event.ChangeData)
			d.Object["data"] = map[string]any{"v": strings.Repeat(s, int(n%4096))}
			if o > 0 {
				d.OldObject = map[string]any{"o": strings.Repeat(s, int(o%4096))}
			}
			d.ChangedPaths = []string{s}
			return e
		}
		buf := make([]byte, 0, 64)
		for i, c := range []struct {
			e     *event.Event
			limit int
		}{{mk(1, objN, oldN), int(limit1)}, {mk(2, oldN, objN), int(limit2)}, {mk(3, 1, 0), int(limit1)}, {mk(4, objN, 0), int(limit2) / 2}} {
			want, werr := sinks.Encode(c.e, mode, c.limit)
			got, gerr := sinks.EncodeInto(buf, c.e, mode, c.limit)
			if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
				t.Fatalf("%d: error %v, Encode %v", i, gerr, werr)
			}
			if !bytes.Equal(got.Body, want.Body) || !reflect.DeepEqual(got.Headers, want.Headers) {
				t.Fatalf("%d: body %q, Encode %q", i, got.Body, want.Body)
			}
			if (got.Event == c.e) != (want.Event == c.e) {
				t.Fatalf("%d: shrunk differs", i)
			}
			if gerr == nil && mode == sinks.ModeStructured {
				buf = got.Body[:0]
			}
		}
	})
}
