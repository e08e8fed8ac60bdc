package deadletter

import (
	"strings"

	"github.com/kubefeed/kubefeed/sinks"
)

// Config is a sink's deadLetter: block: where the events it rejects
// permanently go.
type Config struct {
	// File receives one JSON line per event (the event as the sink got it,
	// with reason, status and time); created 0600 in a 0700 directory.
	File string `yaml:"file"`
}

// Validate checks the block. That the file is not the sink's own (a file
// sink's path) is checked where both are known, by the config.
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	if strings.TrimSpace(c.File) == "" {
		ps.AtKey("", "file is required (a path for JSON lines)")
	}
	return ps
}
