// Package file is the sink that appends JSON lines to a file, with optional
// size-based rotation. Each Send is written with one write call before it
// returns, so a crash of kubefeed loses nothing the sink acknowledged; the
// file is fsynced on Close and on rotation.
package file

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options of the sink. Path is required; MaxSize 0 never rotates.
type Options struct {
	Path string
	// MaxSize in bytes before the file is rotated to Path.1 (0: never).
	MaxSize int64
	// MaxBackups rotated files are kept (Path.1 … Path.N).
	MaxBackups int
}

// Sink appends events to a file.
type Sink struct {
	mu   sync.Mutex
	opts Options
	f    *os.File
	size int64
	buf  bytes.Buffer
}

var _ sinks.Sink = (*Sink)(nil)

// New opens (creating if needed) the file for appending.
func New(o Options) (*Sink, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("file sink: path is required")
	}
	s := &Sink{opts: o}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.opts.Path), 0o755); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	f, err := os.OpenFile(s.opts.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("file sink: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Send appends one line per event.
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return sinks.Permanent(fmt.Errorf("file sink %s: closed", s.opts.Path))
	}
	s.buf.Reset()
	for _, e := range events {
		b, err := event.Marshal(e)
		if err != nil {
			return sinks.Permanent(fmt.Errorf("encode event %s: %w", e.ID, err))
		}
		s.buf.Write(b)
		s.buf.WriteByte('\n')
	}
	if s.opts.MaxSize > 0 && s.size > 0 && s.size+int64(s.buf.Len()) > s.opts.MaxSize {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(s.buf.Bytes())
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", s.opts.Path, err)
	}
	return nil
}

// rotate moves Path to Path.1 (shifting older backups) and starts anew.
func (s *Sink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("file sink: sync: %w", err)
	}
	s.f.Close()
	s.f = nil
	keep := max(s.opts.MaxBackups, 1)
	_ = os.Remove(s.opts.Path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		_ = os.Rename(s.opts.Path+"."+strconv.Itoa(i), s.opts.Path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(s.opts.Path, s.opts.Path+".1"); err != nil {
		return fmt.Errorf("file sink: rotate: %w", err)
	}
	return s.open()
}

// Close fsyncs and closes the file.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
