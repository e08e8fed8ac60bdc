package file_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

// A write that does not finish (the path is a pipe nobody reads, a disk
// that hangs) must not hold Close past its context: Close fails the
// entries (every done called once) and returns, with or without a linger.
func TestAudit2CloseWithAStuckWriteHonoursContext(t *testing.T) {
	for _, linger := range []time.Duration{0, time.Hour} {
		t.Run(linger.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.fifo")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			// A reader that never reads, so that opening for writing
			// succeeds and writes block once the pipe is full.
			r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			s, err := file.New(file.Options{Path: path, Linger: linger})
			if err != nil {
				t.Fatal(err)
			}
			e := sinktest.Event(1, 1)
			e.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": strings.Repeat("x", 1<<20)} // more than a pipe holds
			var calls atomic.Int32
			if err := s.Publish(context.Background(), []*event.Event{e}, func(error) { calls.Add(1) }); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			closed := make(chan error, 1)
			go func() { closed <- s.Close(ctx) }()
			// The guard only bounds the failure.
			returned := false
			select {
			case err := <-closed:
				returned = true
				if err == nil {
					t.Error("Close with a write stuck: nil error, want one saying the write did not finish")
				}
			case <-time.After(10 * time.Second):
				t.Error("Close is still waiting for the stuck write 10s after its context ended")
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d done calls when Close returned, want 1", n)
			}
			r.Close() // the write fails now (broken pipe) and ends
			if !returned {
				<-closed
			}
		})
	}
}
