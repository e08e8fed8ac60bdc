package config

import (
	"bytes"
	"os"

	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// MinRedactionKeyBytes is the shortest key redact: hash accepts (HMAC-SHA256
// wants a key as long as its output).
const MinRedactionKeyBytes = 32

// redactionKey reads redactionKeyFile now, so that a missing, empty or
// short key is a config problem with its position, not a surprise at run
// time.
func (v *validator) redactionKey(path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		v.at("redactionKeyFile", "cannot read the key: %v", err)
		return
	}
	if n := len(bytes.TrimSpace(b)); n < MinRedactionKeyBytes {
		v.at("redactionKeyFile", "key is %d bytes, need at least %d (for example: head -c 48 /dev/urandom | base64 > %s)", n, MinRedactionKeyBytes, path)
	}
}

// sinkSafety checks the options that keep a sink's events and secrets
// where they belong: dead letters.
func (v *validator) sinkSafety(path string, s *Sink) {
	if d := s.DeadLetter; d != nil {
		if ps := d.Validate(); len(ps) > 0 {
			v.block(path+".deadLetter", ps)
		} else if s.File != nil && s.File.Path == d.File {
			v.at(path+".deadLetter.file", "must not be the sink's own file %q", d.File)
		}
	}
}

// SubjectCovers reports whether the NATS subject filter (with * and >
// wildcards) matches the literal subject.
func SubjectCovers(filter, subject string) bool { return natsconn.Matches(filter, subject) }
