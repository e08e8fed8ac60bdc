package nats

import (
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// Config is the sink's block of the config file (nats:): core NATS, at
// most once.
type Config struct {
	NATSConnection natsconn.Config `yaml:",inline"`
	// Subject template (default natsconn.DefaultSubject).
	Subject string `yaml:"subject"`
	// Mode: structured (default) or binary.
	Mode string `yaml:"mode"`
	// Types: kubefeed (default) or knative, Knative ApiServerSource's
	// type names for added, modified and deleted (README, Knative).
	Types string `yaml:"types"`
}

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Subject == "" {
		c.Subject = natsconn.DefaultSubject
	}
	if c.Mode == "" {
		c.Mode = sinks.ModeStructured
	}
}

// Validate checks the block (defaults applied).
func (c *Config) Validate() []sinks.Problem {
	ps := sinks.Problems(c.NATSConnection.Validate())
	if c.Subject != "" {
		if err := natsconn.CheckSubjectTemplate(c.Subject); err != nil {
			ps.At("subject", "%v", err)
		}
	}
	ps.Nest("mode", sinks.ValidateMode(c.Mode))
	ps.Nest("types", sinks.ValidateTypes(c.Types))
	return ps
}

// format is how the sink writes events: mode and types.
func (c *Config) format() sinks.Format { return sinks.Format{Mode: c.Mode, Types: c.Types} }
