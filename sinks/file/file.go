// Package file is the sink that appends JSON lines to a file, with optional
// size-based rotation. Publishes gather while a write runs (sinks.Group);
// each group is written with one write call and fsynced before any of its
// events is acknowledged, so neither a crash of kubefeed nor of the machine
// loses what the sink acknowledged.
//
// Files are created 0600 and missing directories 0700. A failed write,
// open or rotation is retryable: the next Send reopens the file and tries
// the rotation again, so a full or briefly unwritable disk holds events
// back instead of dropping them.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options of the sink. Path is required; MaxSize 0 never rotates.
type Options struct {
	Path string
	// MaxSize in bytes before the file is rotated to Path.1 (0: never).
	MaxSize int64
	// MaxBackups rotated files are kept (Path.1 … Path.N).
	MaxBackups int
	// Linger: a small group of events waits up to this long after its
	// first event for more, so that events trickling in share one write
	// and one fsync (0: write at once).
	Linger time.Duration
}

// sink appends events to a file.
type sink struct {
	mu     sync.Mutex
	opts   Options
	f      *os.File // nil after a failed open or rotation: reopened by the next Send
	size   int64
	buf    bytes.Buffer
	group  *sinks.Group
	closed bool
}

// window is how many objects may wait for the next write.
const window = 4096

var _ sinks.AsyncSink = (*sink)(nil)

// New opens (creating if needed) the file for appending.
func New(o Options) (*sink, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("file sink: path is required")
	}
	s := &sink{opts: o}
	s.group = sinks.NewGroup(window, s.write)
	s.group.SetLinger(o.Linger)
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sink) open() error {
	f, err := sinks.OpenAppend(s.opts.Path)
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

// Publish queues one line per event for the next write; done is called
// once they are written and fsynced.
func (s *sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	return s.group.Publish(ctx, events, done)
}

// Send appends one line per event and returns once they are fsynced.
func (s *sink) Send(ctx context.Context, events []*event.Event) error {
	return s.group.Send(ctx, events)
}

// write appends the entries' lines with one write call and fsyncs. An
// event that cannot be encoded fails its own entry (permanently) only.
func (s *sink) write(entries []sinks.GroupEntry) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(entries))
	s.buf.Reset()
	for i, en := range entries {
		mark := s.buf.Len()
		for _, e := range en.Events {
			b, err := event.Marshal(e)
			if err != nil {
				errs[i] = sinks.Permanent(fmt.Errorf("encode event %s: %w", e.ID, err))
				s.buf.Truncate(mark)
				break
			}
			s.buf.Write(b)
			s.buf.WriteByte('\n')
		}
	}
	if s.buf.Len() == 0 {
		return errs
	}
	if err := s.append(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// append writes buf (rotating first when it would pass MaxSize) and
// fsyncs; every error is retryable.
func (s *sink) append() error {
	if s.closed {
		return fmt.Errorf("file sink %s: closed", s.opts.Path)
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return err // retryable: the directory may come back
		}
	}
	if s.opts.MaxSize > 0 && s.size > 0 && s.size+int64(s.buf.Len()) > s.opts.MaxSize {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(s.buf.Bytes())
	if err != nil {
		// Cut a partial line off, so the retry does not follow garbage.
		if n > 0 && s.f.Truncate(s.size) != nil {
			s.size += int64(n)
		}
		return fmt.Errorf("file sink %s: %w", s.opts.Path, err)
	}
	s.size += int64(n)
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("file sink %s: sync: %w", s.opts.Path, err)
	}
	return nil
}

// rotate moves Path to Path.1 (shifting older backups) and starts anew. On
// failure the file is closed and s.f is nil: the next Send reopens Path
// and rotates again. Nothing rotated is overwritten: a backup that cannot
// be shifted stops the rotation.
func (s *sink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("file sink: sync: %w", err)
	}
	s.f.Close()
	s.f = nil
	keep := max(s.opts.MaxBackups, 1)
	if err := os.Remove(s.backup(keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file sink: rotate: %w", err)
	}
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(s.backup(i), s.backup(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file sink: rotate: %w", err)
		}
	}
	if err := os.Rename(s.opts.Path, s.backup(1)); err != nil {
		return fmt.Errorf("file sink: rotate: %w", err)
	}
	return s.open()
}

func (s *sink) backup(i int) string { return s.opts.Path + "." + strconv.Itoa(i) }

// Close writes what was published (bounded by ctx), fsyncs and closes the
// file. A write still running when ctx ends (a disk or pipe that does not
// take the bytes) does not hold Close: its entries were failed by the
// group, and the file is closed once the write returns.
func (s *sink) Close(ctx context.Context) error {
	gerr := s.group.Close(ctx)
	locked := make(chan struct{})
	go func() {
		s.mu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
	case <-ctx.Done():
		select {
		case <-locked:
			defer s.mu.Unlock()
			return s.closeFile(gerr)
		default:
		}
		go func() {
			<-locked
			defer s.mu.Unlock()
			_ = s.closeFile(nil)
		}()
		if gerr == nil {
			gerr = fmt.Errorf("file sink %s: close: %w", s.opts.Path, ctx.Err())
		}
		return gerr
	}
	defer s.mu.Unlock()
	return s.closeFile(gerr)
}

// closeFile fsyncs and closes the file, and marks the sink closed; s.mu
// is held. It returns the first error of sync, close and gerr.
func (s *sink) closeFile(gerr error) error {
	s.closed = true
	if s.f == nil {
		return gerr
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	if err == nil {
		err = gerr
	}
	return err
}
