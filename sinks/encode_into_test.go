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
