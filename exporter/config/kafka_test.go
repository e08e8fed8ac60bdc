package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

const kafkaBase = "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: bus\n    kafka:\n"

func TestKafkaSinkDefaults(t *testing.T) {
	c, err := config.Parse("f.yaml", []byte(kafkaBase+"      brokers: [kafka-0:9092, 'kafka-1.ns.svc:9093']\n"))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Sinks[0].Kafka
	if k.Topic != "kubefeed" || k.Mode != "structured" || k.Acks != "all" || k.MaxMessageBytes != 1000000 || k.ClientID != "kubefeed" ||
		k.MaxInFlight != 4096 {
		t.Errorf("defaults: %+v", k)
	}
}

func TestKafkaSinkFullConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := kafkaBase + `      brokers: [kafka-0:9092]
      topic: kubefeed.{cluster}.{group}.{resource}
      mode: binary
      sasl: { mechanism: SCRAM-SHA-512, user: kubefeed, passwordFile: ` + pw + ` }
      tls: { caFile: /etc/ca.pem }
      acks: leader
      provision: { partitions: 12, replicationFactor: 3 }
      deadLetterTopic: kubefeed.dead
      maxMessageBytes: 500000
      maxInFlight: 64
`
	c, err := config.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Sinks[0].Kafka
	if k.SASL.Mechanism != "SCRAM-SHA-512" || k.Provision.Partitions != 12 || k.Provision.ReplicationFactor != 3 || k.TLS.CAFile != "/etc/ca.pem" || k.MaxInFlight != 64 {
		t.Errorf("parsed: %+v", k)
	}
}

func TestKafkaSinkProblems(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		name, kafka string
		want        []string
	}{
		{"no brokers", "      topic: x\n", []string{`f.yaml:7:5: sinks[0].kafka: brokers is required`}},
		{"bad broker", "      brokers: ['kafka-0', 'k:99999']\n", []string{`f.yaml:8:17: sinks[0].kafka.brokers[0]: must be host:port`, `sinks[0].kafka.brokers[1]: must be host:port`}},
		{"unknown placeholder", "      brokers: [k:9092]\n      topic: kubefeed.{namespace}\n", []string{`f.yaml:9:14: sinks[0].kafka.topic: topic "kubefeed.{namespace}": unknown placeholder (use {cluster} {group} {resource})`}},
		{"bad topic characters", "      brokers: [k:9092]\n      topic: 'kube feed'\n", []string{`sinks[0].kafka.topic: topic "kube feed": character ' ' is not allowed`}},
		{"topic too long", "      brokers: [k:9092]\n      topic: " + strings.Repeat("t", 250) + "\n", []string{`longer than 249 characters`}},
		{"bad mode and acks", "      brokers: [k:9092]\n      mode: batch\n      acks: none\n", []string{`sinks[0].kafka.mode: must be structured or binary`, `sinks[0].kafka.acks: must be all or leader`}},
		{"bad sasl", "      brokers: [k:9092]\n      sasl: {mechanism: GSSAPI}\n", []string{`sinks[0].kafka.sasl.mechanism: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got "GSSAPI"`, `sasl: user is required`, `sasl: passwordFile is required`}},
		{"unreadable password", "      brokers: [k:9092]\n      sasl: {mechanism: PLAIN, user: u, passwordFile: " + missing + "}\n", []string{`f.yaml:9:55: sinks[0].kafka.sasl.passwordFile: cannot read the password: open ` + missing}},
		{"tls pair", "      brokers: [k:9092]\n      tls: {certFile: /c.pem}\n", []string{`sinks[0].kafka.tls: certFile and keyFile go together`}},
		{"dead letter", "      brokers: [k:9092]\n      deadLetterTopic: kubefeed\n", []string{`sinks[0].kafka.deadLetterTopic: must differ from topic`}},
		{"bad dead letter", "      brokers: [k:9092]\n      deadLetterTopic: 'a/b'\n", []string{`sinks[0].kafka.deadLetterTopic: topic "a/b": character '/' is not allowed`}},
		{"provision and size", "      brokers: [k:9092]\n      maxMessageBytes: 100\n      provision: {partitions: -1}\n", []string{`maxMessageBytes: must be between`, `provision.partitions: must not be negative`}},
		{"window", "      brokers: [k:9092]\n      maxInFlight: -1\n", []string{`f.yaml:9:20: sinks[0].kafka.maxInFlight: must be between 1 and 1048576 records, got -1`}},
		{"window too large", "      brokers: [k:9092]\n      maxInFlight: 2000000\n", []string{`sinks[0].kafka.maxInFlight: must be between 1 and 1048576 records, got 2000000`}},
		{"unknown key", "      brokers: [k:9092]\n      topics: [a]\n", []string{`f.yaml:9:7: unknown key "topics"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(kafkaBase+tc.kafka))
			wantProblems(t, err, tc.want)
		})
	}
}

func TestKafkaSinkWithAnotherKindIsAnError(t *testing.T) {
	_, err := config.Parse("f.yaml", []byte(kafkaBase+"      brokers: [k:9092]\n    stdout: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "set exactly one sink kind") {
		t.Errorf("kafka and stdout in one sink: %v", err)
	}
}
