package deadletter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Record is one line of a dead-letter file.
type Record struct {
	Time    time.Time       `json:"time"`
	Sink    string          `json:"sink"`
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Subject string          `json:"subject,omitempty"`
	Reason  string          `json:"reason"`
	Status  int             `json:"status,omitempty"`
	Event   json.RawMessage `json:"event"`
}

// file appends records to a file.
type file struct {
	mu   sync.Mutex
	path string
	f    *os.File // nil after a failed write: reopened by the next one
}

// openFile opens (creating with mode 0600, directories 0700) the file.
func openFile(path string) (*file, error) {
	f, err := sinks.OpenAppend(path)
	if err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	return &file{path: path, f: f}, nil
}

// write appends the records for events with one write and an fsync.
func (d *file) write(sink string, events []*event.Event, cause error, now time.Time) error {
	var buf bytes.Buffer
	status := statusOf(cause)
	for _, e := range events {
		r := Record{Time: now.UTC(), Sink: sink, ID: e.ID, Type: e.Type, Subject: e.Subject, Reason: cause.Error(), Status: status}
		b, err := event.Marshal(e)
		if err != nil {
			// Keep what identifies the event; the reason says why the rest is missing.
			r.Reason += "; event not encodable: " + err.Error()
			b = []byte("null")
		}
		r.Event = b
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("dead letter %s: encode record of %s: %w", d.path, e.ID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		f, err := sinks.OpenAppend(d.path)
		if err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
		d.f = f
	}
	_, err := d.f.Write(buf.Bytes())
	if err == nil {
		err = d.f.Sync()
	}
	if err != nil {
		d.f.Close()
		d.f = nil
		return fmt.Errorf("dead letter %s: %w", d.path, err)
	}
	return nil
}

// Close closes the file.
func (d *file) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// statusOf finds an HTTP status in err's chain (a webhook sink's status
// error).
func statusOf(err error) int {
	var s interface{ HTTPStatus() int }
	if errors.As(err, &s) {
		return s.HTTPStatus()
	}
	return 0
}
