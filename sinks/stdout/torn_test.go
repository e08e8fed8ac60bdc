package stdout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/stdout"
)

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
