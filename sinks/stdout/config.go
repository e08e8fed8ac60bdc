package stdout

import "github.com/kubefeed/kubefeed/sinks"

// Formats of the sink.
const (
	formatJSON = "json"
	FormatDiff = "diff"
)

// Config is the sink's block of the config file (stdout:).
type Config struct {
	// Format: json (default) or diff (human-readable, for terminals).
	Format string `yaml:"format"`
}

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = formatJSON
	}
}

// Validate checks the block (defaults applied).
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	if f := c.Format; f != formatJSON && f != FormatDiff {
		ps.At("format", "must be json or diff, got %q", f)
	}
	return ps
}
