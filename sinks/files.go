package sinks

import (
	"fmt"
	"os"
	"path/filepath"
)

// File modes of what sinks create: readable by kubefeed's user only, since
// events can carry anything the cluster holds.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// OpenAppend opens path for appending, creating it 0600 (fileMode) and its
// missing parent directories 0700 (dirMode). Existing files and directories
// keep their modes.
func OpenAppend(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
