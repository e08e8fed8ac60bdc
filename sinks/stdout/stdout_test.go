package stdout_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/sinks/stdout"
)

// breakable is a writer that fails while broken.
type breakable struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	broken bool
}

func (b *breakable) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken {
		return 0, errors.New("broken pipe")
	}
	return b.buf.Write(p)
}

func (b *breakable) ids(t *testing.T) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var e struct{ ID string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		out = append(out, e.ID)
	}
	return out
}

func TestConformance(t *testing.T) {
	w := &breakable{}
	sinktest.Run(t, sinktest.Harness{
		New:      func(*testing.T) sinks.Sink { return stdout.New(w, stdout.Options{}) },
		Received: w.ids,
		Break:    func(*testing.T) { w.mu.Lock(); w.broken = true; w.mu.Unlock() },
		Heal:     func(*testing.T) { w.mu.Lock(); w.broken = false; w.mu.Unlock() },
	})
}

func TestDiffFormat(t *testing.T) {
	var buf bytes.Buffer
	s := stdout.New(&buf, stdout.Options{Format: "diff"})
	e := sinktest.Event(1, 7)
	d := e.Data.(*event.ChangeData)
	d.Patch = []jsonpatch.Op{{Op: "replace", Path: "/data/v", Value: "7"}, {Op: "remove", Path: "/data/old"}, {Op: "add", Path: "/data/new", Value: 1}}
	if err := s.Send(t.Context(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	for _, want := range []string{"MODIFIED ConfigMap ns/obj-1 rv=7", `~ /data/v: "7"`, "- /data/old", "+ /data/new: 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b[") {
		t.Errorf("colour codes without Color: %q", got)
	}
}

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
