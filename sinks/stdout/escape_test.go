package stdout_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/sinks/stdout"
)

// TestDiffEscapesControlCharacters: label and annotation keys and values,
// names and kinds come from the cluster; none of them may drive the
// terminal (ANSI/OSC escapes, C1 controls, carriage returns).
func TestDiffEscapesControlCharacters(t *testing.T) {
	for _, color := range []bool{false, true} {
		var buf bytes.Buffer
		s := stdout.New(&buf, stdout.Options{Format: "diff", Color: color})
		e := sinktest.Event(1, 7)
		e.Kind = "Widget\x1b[2J"
		e.Type = "io.kubefeed.\x1b]0;pwned\x07"
		d := e.Data.(*event.ChangeData)
		d.Patch = []jsonpatch.Op{
			{Op: "add", Path: "/metadata/labels/evil\x1b[31mkey", Value: "v"},
			{Op: "replace", Path: "/metadata/annotations/a\rb", Value: "x\x1b]0;title\x07y\u009b31m"},
			{Op: "remove", Path: "/metadata/annotations/osc\x1b]8;;http://x\x1b\\"},
			{Op: "add", Path: "/data/bad\xffutf8", Value: map[string]any{"k\x1b[1m": "\u0085v"}},
		}
		if err := s.Send(t.Context(), []*event.Event{e, func() *event.Event {
			g := sinktest.Event(2, 1)
			g.Type = "io.kubefeed.gap\x1b[5m"
			g.Data = nil
			return g
		}()}); err != nil {
			t.Fatal(err)
		}
		got := buf.String()
		if color {
			for _, c := range []string{"\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[0m"} {
				got = strings.ReplaceAll(got, c, "")
			}
		}
		for i, r := range got {
			if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD') {
				t.Errorf("color=%v: control character %U at %d in output:\n%q", color, r, i, got)
			}
		}
		for _, want := range []string{`/metadata/labels/evil\x1b[31mkey`, `/metadata/annotations/a\rb`, `Widget\x1b[2J`, `\xffutf8`} {
			if !strings.Contains(got, want) {
				t.Errorf("color=%v: output lacks the escaped %q:\n%s", color, want, got)
			}
		}
	}
}
