// Package stdout is the sink that writes events to a terminal or pipe: JSON
// lines (exactly what other sinks get), or readable, optionally coloured
// diffs for people.
package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options of the sink. The zero value writes JSON lines without colour.
type Options struct {
	// Format is "json" (default) or "diff".
	Format string
	// Color adds ANSI colours to the diff format.
	Color bool
}

// sink writes to an io.Writer.
type sink struct {
	mu  sync.Mutex
	out io.Writer
	w   *bytes.Buffer // the group being written: one Write to out
	// torn: a failed write left part of a line in out; the next write
	// ends it first, so that no later event is glued to the fragment.
	torn   bool
	opts   Options
	closed bool
	group  *sinks.Group
}

// window is how many objects may wait for the next write.
const window = 4096

var _ sinks.AsyncSink = (*sink)(nil)

// New writes to w (usually os.Stdout).
func New(w io.Writer, o Options) *sink {
	if o.Format == "" {
		o.Format = "json"
	}
	s := &sink{out: w, w: &bytes.Buffer{}, opts: o}
	s.group = sinks.NewGroup(window, s.write)
	return s
}

// Publish queues the events for the next write; done is called once they
// are flushed.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	return s.group.Publish(ctx, events, done)
}

// Send writes the events and returns once they are flushed.
func (s *sink) Send(ctx context.Context, events []*event.Event) error {
	return s.group.Send(ctx, events)
}

// write writes the entries and flushes once: a group of objects costs one
// write to the terminal or pipe. An event that cannot be encoded fails its
// own entry (permanently) only.
func (s *sink) write(entries []sinks.GroupEntry) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(entries))
	s.w.Reset()
	if s.torn {
		s.w.WriteByte('\n')
	}
	if s.closed {
		for i := range errs {
			errs[i] = fmt.Errorf("stdout sink: closed")
		}
		return errs
	}
	for i, en := range entries {
		lines := make([][]byte, 0, len(en.Events))
		for _, e := range en.Events {
			if s.opts.Format == "diff" {
				continue
			}
			b, err := event.Marshal(e)
			if err != nil {
				errs[i] = sinks.Permanent(fmt.Errorf("encode event %s: %w", e.ID, err))
				break
			}
			lines = append(lines, b)
		}
		if errs[i] != nil {
			continue
		}
		if s.opts.Format == "diff" {
			for _, e := range en.Events {
				s.writeDiff(e)
			}
			continue
		}
		for _, b := range lines {
			s.w.Write(b)
			s.w.WriteByte('\n')
		}
	}
	if err := s.flush(); err != nil {
		err = fmt.Errorf("write: %w", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// Close writes what was published (bounded by ctx) and flushes.
func (s *sink) Close(ctx context.Context) error {
	gerr := s.group.Close(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return gerr
}

// flush writes the group in one Write (a failed group is written again
// whole by its retry). A Write that failed part-way leaves a fragment of
// a line in out: torn makes the next write end that line first.
func (s *sink) flush() error {
	b := s.w.Bytes()
	if len(b) == 0 {
		return nil
	}
	n, err := s.out.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.torn = s.torn && n == 0 || n > 0 && b[n-1] != '\n'
		return err
	}
	s.torn = false
	return nil
}

const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	cyan   = "\x1b[36m"
	reset  = "\x1b[0m"
)

func (s *sink) color(c, text string) string {
	if !s.opts.Color {
		return text
	}
	return c + text + reset
}

func (s *sink) writeDiff(e *event.Event) {
	var head string
	ch := e.Change()
	switch ch {
	case event.Added:
		head = s.color(green, "ADDED   ")
	case event.Modified:
		head = s.color(yellow, "MODIFIED")
	case event.Deleted:
		head = s.color(red, "DELETED ")
	case event.Snapshot:
		head = s.color(cyan, "SNAPSHOT")
	default:
		head = s.color(cyan, escape(e.Type))
	}
	name := e.Name
	if e.Namespace != "" {
		name = e.Namespace + "/" + e.Name
	}
	// Every string from the cluster goes through escape: keys as well as
	// values (a label key can carry an ANSI sequence).
	fmt.Fprintf(s.w, "%s %s %s %s rv=%s", e.Time.Local().Format("15:04:05.000"), head, escape(e.Kind), escape(name), escape(e.ResourceVersion))
	d, ok := e.Data.(*event.ChangeData)
	if ok && d.Recovered {
		s.w.WriteString(" (recovered)")
	}
	if ok && len(d.ChangedBy) > 0 {
		s.w.WriteString(" by ")
		for i, f := range d.ChangedBy {
			if i > 0 {
				s.w.WriteString(", ")
			}
			s.w.WriteString(escape(managerText(f)))
		}
	}
	s.w.WriteByte('\n')
	if !ok {
		return
	}
	for _, op := range d.Patch {
		path := escape(op.Path)
		switch op.Op {
		case jsonpatch.OpAdd:
			fmt.Fprintf(s.w, "  %s\n", s.color(green, "+ "+path+": "+compact(op.Value)))
		case jsonpatch.OpRemove:
			fmt.Fprintf(s.w, "  %s\n", s.color(red, "- "+path))
		default:
			fmt.Fprintf(s.w, "  %s\n", s.color(yellow, "~ "+path+": "+compact(op.Value)))
		}
	}
}

// managerText is a field manager as the diff shows it: the name, then
// the operation and subresource, e.g. "kubectl (Update scale)".
func managerText(f event.FieldManager) string {
	t := f.Manager + " (" + f.Operation
	if f.Subresource != "" {
		t += " " + f.Subresource
	}
	return t + ")"
}

// compact renders a value on one line, shortened past 120 characters.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:117], "") + "..."
	}
	return escape(s)
}
