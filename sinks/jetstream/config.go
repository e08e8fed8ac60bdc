package jetstream

import (
	"strings"

	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// defaultMaxPending bounds the publishes awaiting an ack by default.
const defaultMaxPending = 4096

// Config is the sink's block of the config file (jetstream:): a NATS
// JetStream stream, published to at least once.
type Config struct {
	NATSConnection natsconn.Config `yaml:",inline"`
	Stream         string          `yaml:"stream"`
	// Subject template; tokens {cluster} {group} {version} {resource}
	// {namespace} {name} {kind} {change}. Default natsconn.DefaultSubject.
	Subject string `yaml:"subject"`
	// Mode: structured (default) or binary.
	Mode string `yaml:"mode"`
	// Types: kubefeed (default) or knative, Knative ApiServerSource's
	// type names for added, modified and deleted (README, Knative).
	Types string `yaml:"types"`
	// MaxPending bounds the publishes awaiting an ack (default
	// 4096: defaultMaxPending).
	MaxPending int `yaml:"maxPending"`
	// DeadLetterSubject receives a stub of events too large to send even
	// after shrinking; empty: they are dropped and counted.
	DeadLetterSubject string `yaml:"deadLetterSubject"`
	// Provision creates or updates the stream at start; nil: the stream must
	// exist.
	Provision *StreamProvision `yaml:"provision"`
}

// StreamProvision is the stream kubefeed creates when asked to.
type StreamProvision struct {
	// Subjects of the stream; default: the subject template's literal prefix
	// followed by ">".
	Subjects []string `yaml:"subjects"`
	// Storage: file (default) or memory.
	Storage string `yaml:"storage"`
	// Retention: limits (default), interest or workqueue.
	Retention       string         `yaml:"retention"`
	Replicas        int            `yaml:"replicas"`
	MaxAge          sinks.Duration `yaml:"maxAge"`
	DuplicateWindow sinks.Duration `yaml:"duplicateWindow"`
}

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Subject == "" {
		c.Subject = natsconn.DefaultSubject
	}
	if c.Mode == "" {
		c.Mode = sinks.ModeStructured
	}
	if c.MaxPending == 0 {
		c.MaxPending = defaultMaxPending
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
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". *>") {
		ps.AtKey("", "stream must be a stream name without '.', ' ', '*' or '>' (got %q)", c.Stream)
	}
	if c.MaxPending < 0 {
		ps.At("maxPending", "must not be negative")
	}
	if pr := c.Provision; pr != nil {
		if pr.Storage != "" && pr.Storage != "file" && pr.Storage != "memory" {
			ps.At("provision.storage", "must be file or memory, got %q", pr.Storage)
		}
		if r := pr.Retention; r != "" && r != "limits" && r != "interest" && r != "workqueue" {
			ps.At("provision.retention", "must be limits, interest or workqueue, got %q", r)
		}
		if pr.Replicas < 0 || pr.Replicas > 5 {
			ps.At("provision.replicas", "must be between 1 and 5")
		}
	}
	if dl := c.DeadLetterSubject; dl != "" {
		if err := natsconn.CheckLiteralSubject(dl); err != nil {
			ps.At("deadLetterSubject", "%v", err)
		} else if pr := c.Provision; pr != nil && len(pr.Subjects) > 0 && !holds(pr.Subjects, dl) {
			ps.At("provision.subjects", "no subject of the stream covers deadLetterSubject %q, so its messages would have no stream: add it", dl)
		}
	}
	return ps
}

// format is how the sink writes events: mode and types.
func (c *Config) format() sinks.Format { return sinks.Format{Mode: c.Mode, Types: c.Types} }
