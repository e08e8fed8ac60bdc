package config

import (
	"bytes"
	"os"
)

// minRedactionKeyBytes is the shortest key redact: hash accepts (HMAC-SHA256
// wants a key as long as its output).
const minRedactionKeyBytes = 32

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
	if n := len(bytes.TrimSpace(b)); n < minRedactionKeyBytes {
		v.at("redactionKeyFile", "key is %d bytes, need at least %d (for example: head -c 48 /dev/urandom | base64 > %s)", n, minRedactionKeyBytes, path)
	}
}
