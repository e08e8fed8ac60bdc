package sinks

import (
	"fmt"
	"os"
	"path/filepath"
)

// File modes of what sinks create: readable by kubefeed's user only, since
// events can carry anything the cluster holds.
const (
	FileMode = 0o600
	DirMode  = 0o700
)

// OpenAppend opens path for appending, creating it with FileMode and its
// missing parent directories with DirMode. Existing files and directories
// keep their modes.
func OpenAppend(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, FileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
