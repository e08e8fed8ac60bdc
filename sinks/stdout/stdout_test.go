package stdout_test

import (
	"bytes"
	"context"
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

// The diff names who made the change, escaped like every string from the
// cluster.
func TestDiffNamesTheFieldManagers(t *testing.T) {
	var buf bytes.Buffer
	s := stdout.New(&buf, stdout.Options{Format: "diff"})
	e := sinktest.Event(1, 7)
	d := e.Data.(*event.ChangeData)
	d.Patch = []jsonpatch.Op{{Op: "replace", Path: "/spec/replicas", Value: 5}}
	d.ChangedBy = []event.FieldManager{{Manager: "kubectl", Operation: "Update", Subresource: "scale"}, {Manager: "ops-bot\x1b[31m", Operation: "Apply"}}
	if err := s.Send(t.Context(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	if want := `rv=7 by kubectl (Update scale), ops-bot\x1b[31m (Apply)` + "\n"; !strings.Contains(got, want) {
		t.Errorf("diff output lacks %q:\n%s", want, got)
	}
}

// halfWriter writes a fragment of the first Write and fails (a pipe broken
// mid-write), then works.
type halfWriter struct {
	buf    bytes.Buffer
	failed bool
}

func (h *halfWriter) Write(p []byte) (int, error) {
	if !h.failed {
		h.failed = true
		n, _ := h.buf.Write(p[:10]) // a fragment of the first line
		return n, errors.New("broken pipe")
	}
	return h.buf.Write(p)
}

// A write that fails part-way leaves a fragment; the retry starts on a
// new line, so every event it writes is a line of its own.
func TestTornWriteDoesNotGlueTheRetry(t *testing.T) {
	w := &halfWriter{}
	s := stdout.New(w, stdout.Options{})
	evs := []*event.Event{{SpecVersion: "1.0", ID: "a", Type: "t"}, {SpecVersion: "1.0", ID: "b", Type: "t"}}
	if err := s.Send(context.Background(), evs); err == nil {
		t.Fatal("the broken write reported success")
	}
	if err := s.Send(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	var ids []string
	bad := 0
	for _, line := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		var e struct{ ID string }
		if json.Unmarshal([]byte(line), &e) != nil {
			bad++
			continue
		}
		ids = append(ids, e.ID)
	}
	if bad > 1 || len(ids) < 2 || strings.Join(ids[len(ids)-2:], ",") != "a,b" {
		t.Fatalf("%d broken lines, whole event lines %v; want the retry's a,b whole after at most one fragment:\n%s", bad, ids, w.buf.String())
	}
}
