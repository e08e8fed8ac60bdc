package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

func ids(t *testing.T, paths ...string) []string {
	var out []string
	for _, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct{ ID string }
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: bad line: %v", p, err)
			}
			out = append(out, e.ID)
		}
		f.Close()
	}
	return out
}

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinks.Sink {
			s, err := file.New(file.Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Received: func(t *testing.T) []string { return ids(t, path) },
	})
}

func TestRotationKeepsEveryEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := file.New(file.Options{Path: path, MaxSize: 4096, MaxBackups: 50})
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 60; v++ {
		if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	backups, _ := filepath.Glob(path + ".*")
	if len(backups) < 2 {
		t.Fatalf("rotated files: %v, want several at 4 KiB each", backups)
	}
	// Oldest first: path.N … path.1, then path.
	var paths []string
	for i := len(backups); i >= 1; i-- {
		paths = append(paths, path+"."+itoa(i))
		st, err := os.Stat(path + "." + itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over the 4096 limit", st.Name(), st.Size())
		}
	}
	got := ids(t, append(paths, path)...)
	if len(got) != 60 {
		t.Fatalf("%d events across rotated files, want 60", len(got))
	}
	for i, id := range got {
		if id != sinktest.Event(1, i+1).ID {
			t.Fatalf("event %d is %s, want %s", i, id, sinktest.Event(1, i+1).ID)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestFileModes: the events file, its rotated files and the directories the
// sink creates are private to kubefeed's user.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "events")
	path := filepath.Join(dir, "events.jsonl")
	s, err := file.New(file.Options{Path: path, MaxSize: 2048, MaxBackups: 3})
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 20; v++ {
		if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) < 3 {
		t.Fatalf("files %v: want the events file and rotated ones", files)
	}
	for _, f := range files {
		checkMode(t, f, 0o600)
	}
	checkMode(t, dir, 0o700|os.ModeDir)
	checkMode(t, filepath.Dir(dir), 0o700|os.ModeDir)
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != want {
		t.Errorf("%s has mode %v, want %v", path, st.Mode(), want)
	}
}

// TestFailedRotationIsRetryable: while the directory cannot be written
// (here it is replaced by a plain file, which stops root too), sends fail
// retryably; once it is back the next send rotates, and no event is lost.
func TestFailedRotationIsRetryable(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "events")
	aside := filepath.Join(base, "aside")
	path := filepath.Join(dir, "events.jsonl")
	s, err := file.New(file.Options{Path: path, MaxSize: 2048, MaxBackups: 100})
	if err != nil {
		t.Fatal(err)
	}
	send := func(v int) error { return s.Send(context.Background(), []*event.Event{sinktest.Event(1, v)}) }
	failures := 0
	v := 1
	for ; v <= 10; v++ {
		if err := send(v); err != nil {
			t.Fatalf("event %d: %v", v, err)
		}
	}
	// Break: the directory goes away and a file takes its name.
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for ; ; v++ {
		err := send(v)
		if err == nil {
			continue // still under the size limit: the open file takes it
		}
		if sinks.IsPermanent(err) {
			t.Fatalf("event %d: failed rotation is permanent: %v", v, err)
		}
		failures++
		break
	}
	// Further sends keep failing retryably, never permanently.
	for i := 0; i < 3; i++ {
		if err := send(v); err == nil || sinks.IsPermanent(err) {
			t.Fatalf("event %d while broken: %v, want a retryable error", v, err)
		}
	}
	// Heal.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, dir); err != nil {
		t.Fatal(err)
	}
	last := v + 20
	for ; v <= last; v++ {
		if err := send(v); err != nil {
			t.Fatalf("event %d after healing: %v", v, err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	backups, _ := filepath.Glob(path + ".*")
	var paths []string
	for i := len(backups); i >= 1; i-- {
		paths = append(paths, path+"."+itoa(i))
	}
	got := ids(t, append(paths, path)...)
	if len(got) != last {
		t.Fatalf("%d events across files, want %d (after %d failures): %v", len(got), last, failures, got)
	}
	for i, id := range got {
		if id != sinktest.Event(1, i+1).ID {
			t.Fatalf("event %d is %s, want %s", i, id, sinktest.Event(1, i+1).ID)
		}
	}
}

// Publishes of several objects go in one group: an event that cannot be
// encoded fails its own object, permanently; the others are written.
func TestGroupFailsOnlyTheBadObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := file.New(file.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	bad := sinktest.Event(2, 1)
	bad.Data.(*event.ChangeData).Object["data"] = map[string]any{"v": math.NaN()}
	evs := [][]*event.Event{{sinktest.Event(1, 1)}, {bad}, {sinktest.Event(3, 1), sinktest.Event(3, 2)}}
	errs := make([]error, len(evs))
	var wg sync.WaitGroup
	for i, e := range evs {
		wg.Add(1)
		if err := s.Publish(context.Background(), e, func(err error) { errs[i] = err; wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("good objects failed: %v, %v", errs[0], errs[2])
	}
	if errs[1] == nil || !sinks.IsPermanent(errs[1]) {
		t.Errorf("unencodable event: %v, want a permanent error", errs[1])
	}
	got := ids(t, path)
	want := []string{sinktest.Event(1, 1).ID, sinktest.Event(3, 1).ID, sinktest.Event(3, 2).ID}
	if len(got) != len(want) {
		t.Fatalf("file holds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %s, want %s", i, got[i], want[i])
		}
	}
}

// A write that does not finish (the path is a pipe nobody reads, a disk
// that hangs) must not hold Close past its context: Close fails the
// entries (every done called once) and returns, with or without a linger.
func TestCloseWithAStuckWriteHonoursContext(t *testing.T) {
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
