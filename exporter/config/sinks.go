package config

import (
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	natssink "github.com/kubefeed/kubefeed/sinks/nats"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
	"github.com/kubefeed/kubefeed/sinks/stdout"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// The blocks of the file that configure sinks belong to the sink packages:
// each owns its type, its defaults and its checks (sinks.Problem), and this
// package assembles them and places their problems in the file. The names
// below are those blocks as the config package has always called them.

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

// DeadLetter is where a sink's permanently rejected events go.
type DeadLetter = deadletter.Config

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

// Kafka defaults.
const (
	DefaultKafkaMaxMessageBytes = kafka.DefaultMaxMessageBytes
	DefaultKafkaMaxInFlight     = kafka.DefaultMaxInFlight
)
