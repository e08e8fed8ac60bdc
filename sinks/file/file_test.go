package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/event"
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
