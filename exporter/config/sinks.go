package config

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	natssink "github.com/kubefeed/kubefeed/sinks/nats"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
	"github.com/kubefeed/kubefeed/sinks/otlp"
	"github.com/kubefeed/kubefeed/sinks/stdout"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// Sink is one named sink; exactly one of the kinds is set. Each kind's
// block belongs to its sink package, which owns its keys, its defaults and
// its checks; the config assembles them and places their problems in the
// file.
type Sink struct {
	Name      string            `yaml:"name"`
	Stdout    *stdout.Config    `yaml:"stdout"`
	File      *file.Config      `yaml:"file"`
	JetStream *jetstream.Config `yaml:"jetstream"`
	NATS      *natssink.Config  `yaml:"nats"`
	Webhook   *webhook.Config   `yaml:"webhook"`
	Kafka     *kafka.Config     `yaml:"kafka"`
	OTLP      *otlp.Config      `yaml:"otlp"`
	// DeadLetter keeps the events this sink rejects permanently; nil: they
	// are logged, counted and dropped.
	DeadLetter *deadletter.Config `yaml:"deadLetter"`
}

// block is what the config needs of a sink kind's block.
type block interface {
	// SetDefaults fills in the block's documented defaults.
	SetDefaults()
	// Validate reports the block's problems (defaults applied), at paths
	// relative to the block.
	Validate() []sinks.Problem
}

var (
	_ block = (*stdout.Config)(nil)
	_ block = (*file.Config)(nil)
	_ block = (*jetstream.Config)(nil)
	_ block = (*natssink.Config)(nil)
	_ block = (*webhook.Config)(nil)
	_ block = (*kafka.Config)(nil)
	_ block = (*otlp.Config)(nil)
)

// kindBlock is the block of one sink kind set on a Sink, with its key.
type kindBlock struct {
	key   string
	block block
}

// kinds returns the kinds set on s, in a fixed order: stdout, file,
// jetstream, nats, webhook, kafka, otlp.
func (s *Sink) kinds() []kindBlock {
	var out []kindBlock
	add := func(key string, set bool, b block) {
		if set {
			out = append(out, kindBlock{key, b})
		}
	}
	add("stdout", s.Stdout != nil, s.Stdout)
	add("file", s.File != nil, s.File)
	add("jetstream", s.JetStream != nil, s.JetStream)
	add("nats", s.NATS != nil, s.NATS)
	add("webhook", s.Webhook != nil, s.Webhook)
	add("kafka", s.Kafka != nil, s.Kafka)
	add("otlp", s.OTLP != nil, s.OTLP)
	return out
}

func (s *Sink) setDefaults() {
	for _, k := range s.kinds() {
		k.block.SetDefaults()
	}
}

func (v *validator) sink(path string, s *Sink, names map[string]bool) {
	if errs := validation.IsDNS1123Label(s.Name); len(errs) > 0 {
		v.at(path+".name", "sink name %q must be a DNS label: %s", s.Name, strings.Join(errs, "; "))
	} else if names[s.Name] {
		v.at(path+".name", "duplicate sink name %q", s.Name)
	}
	names[s.Name] = true
	kinds := s.kinds()
	for _, k := range kinds {
		v.block(path+"."+k.key, k.block.Validate())
	}
	if d := s.DeadLetter; d != nil {
		if ps := d.Validate(); len(ps) > 0 {
			v.block(path+".deadLetter", ps)
		} else if s.File != nil && s.File.Path == d.File {
			v.at(path+".deadLetter.file", "must not be the sink's own file %q", d.File)
		}
	}
	if len(kinds) != 1 {
		v.atKey(path, "set exactly one sink kind (stdout, file, jetstream, nats, webhook, kafka, otlp), found %d", len(kinds))
	}
}

// The names below are the sink packages' blocks and values as the config
// package has always called them; code that builds configs uses them.

// TLS is a client TLS block.
type TLS = sinks.TLS

// Duration is a time.Duration written as "30s", "10m".
type Duration = sinks.Duration

// NATSConnection is how a sink or checkpoint connects to NATS.
type NATSConnection = natsconn.Config

// DefaultSubject is the subject template of the NATS sinks.
const DefaultSubject = natsconn.DefaultSubject

// StdoutSink writes JSON lines (or diffs) to standard output.
type StdoutSink = stdout.Config

// FileSink appends JSON lines to a file.
type FileSink = file.Config

// DefaultFileLinger is the file sink's default linger.
const DefaultFileLinger = file.DefaultLinger

// Content modes of CloudEvents on the wire.
const (
	ModeStructured = sinks.ModeStructured
	ModeBinary     = sinks.ModeBinary
)

// JetStreamSink publishes to a NATS JetStream stream, at least once.
type JetStreamSink = jetstream.Config

// StreamProvision is the stream a JetStream sink creates when asked to.
type StreamProvision = jetstream.StreamProvision

// NATSSink publishes with core NATS: at most once (see README).
type NATSSink = natssink.Config

// WebhookSink POSTs CloudEvents over HTTP.
type WebhookSink = webhook.Config

// Webhook redirect policies.
const (
	FollowRedirectsNever    = webhook.FollowRedirectsNever
	FollowRedirectsSameHost = webhook.FollowRedirectsSameHost
)

// KafkaSink produces CloudEvents to a Kafka topic, at least once.
type KafkaSink = kafka.Config

// KafkaSASL authenticates a Kafka sink to the brokers.
type KafkaSASL = kafka.SASL

// TopicProvision is how a Kafka sink creates a missing topic.
type TopicProvision = kafka.TopicProvision

// OTLPSink exports changes as OpenTelemetry log records over OTLP.
type OTLPSink = otlp.Config
