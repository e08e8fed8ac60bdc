package kafka

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubefeed/kubefeed/sinks"
)

// Config is the sink's block of the config file (kafka:): CloudEvents
// produced to a Kafka topic, at least once, with the object's uid as
// record key.
type Config struct {
	// Brokers to bootstrap from, host:port.
	Brokers []string `yaml:"brokers"`
	// Topic name or template; placeholders {cluster} {group} {resource}
	// (topicTokens). Default kubefeed.
	Topic string `yaml:"topic"`
	// Mode: structured (default) or binary (ce_* headers, data as value).
	Mode string `yaml:"mode"`
	// Types: kubefeed (default) or knative, Knative ApiServerSource's
	// type names for added, modified and deleted (README, Knative).
	Types string `yaml:"types"`
	// ClientID the brokers see (default kubefeed).
	ClientID string     `yaml:"clientID"`
	SASL     *SASL      `yaml:"sasl"`
	TLS      *sinks.TLS `yaml:"tls"`
	// Acks: all (default; idempotent producer) or leader.
	Acks string `yaml:"acks"`
	// MaxMessageBytes bounds one record batch and so one event (default
	// 1000000); must not exceed the topic's max.message.bytes.
	MaxMessageBytes int `yaml:"maxMessageBytes"`
	// DeadLetterTopic receives a stub of events too large to send even after
	// shrinking; empty: they are dropped and counted.
	DeadLetterTopic string `yaml:"deadLetterTopic"`
	// Provision creates missing topics; nil: they must exist.
	Provision *TopicProvision `yaml:"provision"`
	// MaxInFlight bounds the records handed to the producer and awaiting
	// the broker's ack, across objects: the sink's window (default 4096).
	MaxInFlight int `yaml:"maxInFlight"`
	// Tombstones writes, after each deleted event, a record with the same
	// key (the uid) and a null value, so that a compacted topic
	// (cleanup.policy=compact) keeps one record per live object.
	Tombstones bool `yaml:"tombstones"`
}

// SASL authenticates to the brokers; the password is read from a file.
type SASL struct {
	// Mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism    string `yaml:"mechanism"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"passwordFile"`
}

// TopicProvision is how kubefeed creates a missing topic.
type TopicProvision struct {
	// Partitions of a new topic; 0: the broker's default.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor of a new topic; 0: the broker's default.
	ReplicationFactor int16 `yaml:"replicationFactor"`
}

// Defaults and values of the block.
const (
	defaultTopic           = "kubefeed"
	defaultClientID        = "kubefeed"
	defaultMaxMessageBytes = 1000000 // below Kafka's default max.message.bytes (1048588)
	defaultMaxInFlight     = 4096
	maxInFlightLimit       = 1 << 20
	acksAll                = "all"
	acksLeader             = "leader"
)

// saslMechanisms are the SASL mechanisms the sink speaks.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// topicTokens are the placeholders a topic template may use: the ones
// a gap marker knows too, so that it reaches the topic of every object it
// stands for.
var topicTokens = []string{"{cluster}", "{group}", "{resource}"}

// requestTimeout bounds one admin request of the sink (topic checks).
const requestTimeout = 10 * time.Second

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Topic == "" {
		c.Topic = defaultTopic
	}
	if c.Mode == "" {
		c.Mode = sinks.ModeStructured
	}
	if c.ClientID == "" {
		c.ClientID = defaultClientID
	}
	if c.Acks == "" {
		c.Acks = acksAll
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
}

// Validate checks the block (defaults applied). It opens the SASL
// password file, without reading it, so that a missing one is a problem
// of the config rather than of the first connection.
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	if len(c.Brokers) == 0 {
		ps.AtKey("", "brokers is required (for example [kafka-0:9092])")
	}
	for i, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
			ps.At(fmt.Sprintf("brokers[%d]", i), "must be host:port, such as kafka-0:9092 (got %q)", b)
		}
	}
	if err := checkTopicTemplate(c.Topic); err != nil {
		ps.At("topic", "%v", err)
	}
	ps.Nest("mode", sinks.ValidateMode(c.Mode))
	ps.Nest("types", sinks.ValidateTypes(c.Types))
	if c.Acks != acksAll && c.Acks != acksLeader {
		ps.At("acks", "must be all or leader, got %q", c.Acks)
	}
	if c.MaxMessageBytes < 16<<10 || c.MaxMessageBytes > 100<<20 {
		ps.At("maxMessageBytes", "must be between 16384 and 104857600, got %d", c.MaxMessageBytes)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > maxInFlightLimit {
		ps.At("maxInFlight", "must be between 1 and %d records, got %d", maxInFlightLimit, c.MaxInFlight)
	}
	if d := c.DeadLetterTopic; d != "" {
		if err := checkTopicName(d); err != nil {
			ps.At("deadLetterTopic", "topic %q: %v", d, err)
		} else if d == c.Topic {
			ps.At("deadLetterTopic", "must differ from topic")
		}
	}
	if s := c.SASL; s != nil {
		known := false
		for _, m := range saslMechanisms {
			known = known || s.Mechanism == m
		}
		if !known {
			ps.At("sasl.mechanism", "must be one of %s, got %q", strings.Join(saslMechanisms, ", "), s.Mechanism)
		}
		if s.User == "" {
			ps.AtKey("sasl", "user is required")
		}
		if s.PasswordFile == "" {
			ps.AtKey("sasl", "passwordFile is required")
		} else if err := readable(s.PasswordFile); err != nil {
			ps.At("sasl.passwordFile", "cannot read the password: %v", err)
		}
	}
	ps.Nest("tls", c.TLS.Validate())
	if pr := c.Provision; pr != nil {
		if pr.Partitions < 0 {
			ps.At("provision.partitions", "must not be negative")
		}
		if pr.ReplicationFactor < 0 {
			ps.At("provision.replicationFactor", "must not be negative")
		}
	}
	return ps
}

// readable checks that a secret file can be opened, without reading it.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkTopicTemplate rejects topic templates with unknown placeholders or
// characters Kafka does not allow in topic names.
func checkTopicTemplate(tmpl string) error {
	if tmpl == "" {
		return fmt.Errorf("topic is empty")
	}
	rest := tmpl
	for _, ph := range topicTokens {
		rest = strings.ReplaceAll(rest, ph, "x")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return fmt.Errorf("topic %q: unknown placeholder (use %s)", tmpl, strings.Join(topicTokens, " "))
	}
	if err := checkTopicName(rest); err != nil {
		return fmt.Errorf("topic %q: %w", tmpl, err)
	}
	return nil
}

// checkTopic rejects what Kafka does not accept as a topic name, naming it.
func checkTopic(t string) error {
	if err := checkTopicName(t); err != nil {
		return fmt.Errorf("topic %q: %w", t, err)
	}
	return nil
}

// maxTopicLength is the longest topic name Kafka accepts.
const maxTopicLength = 249

func checkTopicName(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("not a valid topic name")
	}
	if len(t) > maxTopicLength {
		return fmt.Errorf("longer than %d characters", maxTopicLength)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q is not allowed (letters, digits, '.', '_', '-')", c)
		}
	}
	return nil
}

// format is how the sink writes events: mode and types.
func (c *Config) format() sinks.Format { return sinks.Format{Mode: c.Mode, Types: c.Types} }
