package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// KafkaSink produces CloudEvents to a Kafka topic, at least once, with the
// object's uid as record key.
type KafkaSink struct {
	// Brokers to bootstrap from, host:port.
	Brokers []string `yaml:"brokers"`
	// Topic name or template; placeholders KafkaTopicTokens. Default
	// DefaultKafkaTopic.
	Topic string `yaml:"topic"`
	// Mode: structured (default) or binary (ce_* headers, data as value).
	Mode string `yaml:"mode"`
	// ClientID the brokers see (default kubefeed).
	ClientID string     `yaml:"clientID"`
	SASL     *KafkaSASL `yaml:"sasl"`
	TLS      *TLS       `yaml:"tls"`
	// Acks: all (default; idempotent producer) or leader.
	Acks string `yaml:"acks"`
	// MaxMessageBytes bounds one record batch and so one event (default
	// DefaultKafkaMaxMessageBytes); must not exceed the topic's
	// max.message.bytes.
	MaxMessageBytes int `yaml:"maxMessageBytes"`
	// DeadLetterTopic receives a stub of events too large to send even after
	// shrinking; empty: they are dropped and counted.
	DeadLetterTopic string `yaml:"deadLetterTopic"`
	// Provision creates missing topics; nil: they must exist.
	Provision *TopicProvision `yaml:"provision"`
	// MaxInFlight bounds the records handed to the producer and awaiting
	// the broker's ack, across objects: the sink's window (default
	// DefaultKafkaMaxInFlight).
	MaxInFlight int `yaml:"maxInFlight"`
}

// KafkaSASL authenticates to the brokers; the password is read from a file.
type KafkaSASL struct {
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

// Kafka defaults and values.
const (
	DefaultKafkaTopic           = "kubefeed"
	DefaultKafkaMaxMessageBytes = 1000000 // below Kafka's default max.message.bytes (1048588)
	DefaultKafkaMaxInFlight     = 4096
	MaxKafkaMaxInFlight         = 1 << 20
	KafkaAcksAll                = "all"
	KafkaAcksLeader             = "leader"
)

// KafkaSASLMechanisms are the SASL mechanisms the Kafka sink speaks.
var KafkaSASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// KafkaTopicTokens are the placeholders a topic template may use: the ones
// a gap marker knows too, so that it reaches the topic of every object it
// stands for.
var KafkaTopicTokens = []string{"{cluster}", "{group}", "{resource}"}

// KafkaRequestTimeout bounds one admin request of the sink (topic checks).
const KafkaRequestTimeout = 10 * time.Second

func (k *KafkaSink) setDefaults() {
	if k.Topic == "" {
		k.Topic = DefaultKafkaTopic
	}
	if k.Mode == "" {
		k.Mode = ModeStructured
	}
	if k.ClientID == "" {
		k.ClientID = "kubefeed"
	}
	if k.Acks == "" {
		k.Acks = KafkaAcksAll
	}
	if k.MaxMessageBytes == 0 {
		k.MaxMessageBytes = DefaultKafkaMaxMessageBytes
	}
	if k.MaxInFlight == 0 {
		k.MaxInFlight = DefaultKafkaMaxInFlight
	}
}

func (v *validator) kafka(p string, k *KafkaSink) {
	if len(k.Brokers) == 0 {
		v.atKey(p, "brokers is required (for example [kafka-0:9092])")
	}
	for i, b := range k.Brokers {
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
			v.at(fmt.Sprintf("%s.brokers[%d]", p, i), "must be host:port, such as kafka-0:9092 (got %q)", b)
		}
	}
	if err := CheckTopicTemplate(k.Topic); err != nil {
		v.at(p+".topic", "%v", err)
	}
	v.mode(p+".mode", k.Mode)
	if k.Acks != KafkaAcksAll && k.Acks != KafkaAcksLeader {
		v.at(p+".acks", "must be all or leader, got %q", k.Acks)
	}
	if k.MaxMessageBytes < 16<<10 || k.MaxMessageBytes > 100<<20 {
		v.at(p+".maxMessageBytes", "must be between 16384 and 104857600, got %d", k.MaxMessageBytes)
	}
	if k.MaxInFlight < 1 || k.MaxInFlight > MaxKafkaMaxInFlight {
		v.at(p+".maxInFlight", "must be between 1 and %d records, got %d", MaxKafkaMaxInFlight, k.MaxInFlight)
	}
	if d := k.DeadLetterTopic; d != "" {
		if err := checkTopicName(d); err != nil {
			v.at(p+".deadLetterTopic", "topic %q: %v", d, err)
		} else if d == k.Topic {
			v.at(p+".deadLetterTopic", "must differ from topic")
		}
	}
	if s := k.SASL; s != nil {
		known := false
		for _, m := range KafkaSASLMechanisms {
			known = known || s.Mechanism == m
		}
		if !known {
			v.at(p+".sasl.mechanism", "must be one of %s, got %q", strings.Join(KafkaSASLMechanisms, ", "), s.Mechanism)
		}
		if s.User == "" {
			v.atKey(p+".sasl", "user is required")
		}
		if s.PasswordFile == "" {
			v.atKey(p+".sasl", "passwordFile is required")
		} else if err := readable(s.PasswordFile); err != nil {
			v.at(p+".sasl.passwordFile", "cannot read the password: %v", err)
		}
	}
	v.block(p+".tls", k.TLS.Validate())
	if pr := k.Provision; pr != nil {
		if pr.Partitions < 0 {
			v.at(p+".provision.partitions", "must not be negative")
		}
		if pr.ReplicationFactor < 0 {
			v.at(p+".provision.replicationFactor", "must not be negative")
		}
	}
}

// readable checks that a secret file can be opened, without reading it.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// CheckTopicTemplate rejects topic templates with unknown placeholders or
// characters Kafka does not allow in topic names.
func CheckTopicTemplate(tmpl string) error {
	if tmpl == "" {
		return fmt.Errorf("topic is empty")
	}
	rest := tmpl
	for _, ph := range KafkaTopicTokens {
		rest = strings.ReplaceAll(rest, ph, "x")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return fmt.Errorf("topic %q: unknown placeholder (use %s)", tmpl, strings.Join(KafkaTopicTokens, " "))
	}
	if err := checkTopicName(rest); err != nil {
		return fmt.Errorf("topic %q: %w", tmpl, err)
	}
	return nil
}

// CheckTopicName rejects what Kafka does not accept as a topic name.
func CheckTopicName(t string) error {
	if err := checkTopicName(t); err != nil {
		return fmt.Errorf("topic %q: %w", t, err)
	}
	return nil
}

// MaxTopicLength is the longest topic name Kafka accepts.
const MaxTopicLength = 249

func checkTopicName(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("not a valid topic name")
	}
	if len(t) > MaxTopicLength {
		return fmt.Errorf("longer than %d characters", MaxTopicLength)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q is not allowed (letters, digits, '.', '_', '-')", c)
		}
	}
	return nil
}
