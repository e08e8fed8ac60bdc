package otlp

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// headerSet is the sink's headers: the config's values and the contents
// of its header files. A file is read again when it changed (a rotated
// token mounted from a Secret), looked at no more than once per second,
// so that a credential rotated under a running kubefeed is used from the
// next export on; the export refused meanwhile (401, Unauthenticated) is
// retried (errors.go), not dropped.
type headerSet struct {
	check func(string) error // the protocol's rule for a value

	mu      sync.Mutex
	static  map[string]string
	files   map[string]*headerFile
	looked  time.Time
	secrets []string // every value seen, scrubbed from what the receiver echoes
	now     func() time.Time
}

type headerFile struct {
	path  string
	value string
	mod   time.Time
	size  int64
}

// recheck is how often header files are looked at.
const recheck = time.Second

// newHeaderSet reads the header files once; an unreadable file or a value
// the protocol cannot carry is an error naming the header and the file.
func newHeaderSet(static, files map[string]string, check func(string) error) (*headerSet, error) {
	h := &headerSet{check: check, static: map[string]string{}, files: map[string]*headerFile{}, now: time.Now}
	for k, v := range static {
		h.static[k] = v
		h.addSecret(v)
	}
	for k, path := range files {
		f := &headerFile{path: path}
		if err := h.read(k, f); err != nil {
			return nil, err
		}
		h.files[k] = f
	}
	h.looked = h.now()
	return h, nil
}

// read reads f's value for header k.
func (h *headerSet) read(k string, f *headerFile) error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("otlp headerFiles[%s]: %w", k, err)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("otlp headerFiles[%s]: %w", k, err)
	}
	v := strings.TrimSpace(string(b))
	if err := h.check(v); err != nil {
		return fmt.Errorf("otlp headerFiles: header %q (from %s): %w", k, f.path, err)
	}
	f.value, f.mod, f.size = v, st.ModTime(), st.Size()
	h.addSecret(v)
	return nil
}

func (h *headerSet) addSecret(v string) {
	if len(v) >= 4 { // shorter values would scrub ordinary words
		h.secrets = append(h.secrets, v)
	}
}

// current returns the headers to send now. A file that changed but cannot
// be read, or holds a value the protocol cannot carry, keeps its last
// value (the receiver then says whether it still works).
func (h *headerSet) current() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); len(h.files) > 0 && now.Sub(h.looked) >= recheck {
		h.looked = now
		for k, f := range h.files {
			st, err := os.Stat(f.path)
			if err != nil || (st.ModTime().Equal(f.mod) && st.Size() == f.size) {
				continue
			}
			next := *f
			if h.read(k, &next) == nil {
				*f = next
			}
		}
	}
	out := make(map[string]string, len(h.static)+len(h.files))
	for k, v := range h.static {
		out[k] = v
	}
	for k, f := range h.files {
		out[k] = f.value
	}
	return out
}

// scrub removes every header value seen from text the receiver controls.
func (h *headerSet) scrub(text string) string {
	h.mu.Lock()
	secrets := h.secrets
	h.mu.Unlock()
	for _, v := range secrets {
		text = strings.ReplaceAll(text, v, "<redacted>")
	}
	return text
}
