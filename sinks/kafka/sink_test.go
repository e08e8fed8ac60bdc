package kafka_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// sinkConfig is the sink's config as `kubefeed run` builds it, with
// defaults, provisioning 3 partitions.
func sinkConfig(addr string) config.KafkaSink {
	c := config.Config{Sinks: []config.Sink{{Name: "bus", Kafka: &config.KafkaSink{
		Brokers:   []string{addr},
		Provision: &config.TopicProvision{Partitions: 3},
	}}}}
	c.SetDefaults()
	return *c.Sinks[0].Kafka
}

func newSink(t *testing.T, cfg config.KafkaSink) *kafka.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := kafka.New(ctx, kafka.Options{Config: cfg, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func records(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	rs, err := kafkatest.Records(addr, topic)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// eventOf decodes a structured record.
func eventOf(t *testing.T, r *kgo.Record) (event.Event, event.ChangeData) {
	t.Helper()
	var e struct {
		event.Event
		Data event.ChangeData `json:"data"`
	}
	if err := json.Unmarshal(r.Value, &e); err != nil {
		t.Fatalf("record value %q: %v", r.Value, err)
	}
	return e.Event, e.Data
}

func TestConformance(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	sinktest.Run(t, sinktest.Harness{
		// One partition: the topic's order is then the arrival order the
		// suite reads.
		New: func(t *testing.T) sinks.Sink {
			cfg := sinkConfig(kc.Addr())
			cfg.Provision.Partitions = 1
			return newSink(t, cfg)
		},
		Received: func(t *testing.T) []string {
			var ids []string
			for _, r := range records(t, kc.Addr(), "kubefeed") {
				e, _ := eventOf(t, r)
				ids = append(ids, e.ID)
			}
			return ids
		},
		Break: func(*testing.T) { kc.Shutdown() },
		Heal: func(t *testing.T) {
			if err := kc.Restart(); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// gapEvent is a gap marker as the exporter builds it.
func gapEvent(scope, resource, ns string) *event.Event {
	return &event.Event{
		SpecVersion: event.SpecVersion, ID: "gap.0123456789abcdef01234567", Source: "kubefeed/test", Type: event.TypeGap,
		Subject: "/scopes/" + strings.ReplaceAll(scope, " ", "/"), Time: time.Unix(10, 0).UTC(), DataContentType: event.DataContentType,
		Cluster: "test", Resource: resource, Namespace: ns,
		Data: &event.GapData{Scope: scope, From: time.Unix(0, 0).UTC(), To: time.Unix(10, 0).UTC(), Reason: "relist"},
	}
}

func TestUnreachableBrokerAtStartIsNotAnError(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	kc.Shutdown()
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := s.Send(ctx, []*event.Event{sinktest.Event(1, 1)})
	cancel()
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("send while the broker is down: %v, want a retryable error", err)
	}
	if err := kc.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); err != nil {
		t.Fatalf("send after the broker came up: %v", err)
	}
	if n := len(records(t, kc.Addr(), "kubefeed")); n < 1 {
		t.Errorf("topic holds %d records", n)
	}
}

func TestSASL(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			kc := kafkatest.StartT(t, kafkatest.Options{Extra: kafkatestSASL(mech, "kubefeed", "s3cret")})
			cfg := sinkConfig(kc.Addr())
			cfg.SASL = &config.KafkaSASL{Mechanism: mech, User: "kubefeed", PasswordFile: pw}
			s := newSink(t, cfg)
			if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); err != nil {
				t.Errorf("send with %s: %v", mech, err)
			}
			_ = s.Close(context.Background())
		})
	}
	// kfake closes the connection on bad credentials, where Kafka answers
	// SASL_AUTHENTICATION_FAILED first: the fault makes it answer as Kafka.
	t.Run("RejectedCredentials", func(t *testing.T) {
		kc := kafkatest.StartT(t, kafkatest.Options{Extra: kafkatestSASL("SCRAM-SHA-512", "kubefeed", "s3cret")})
		kc.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.SASLAuthenticate}, TopLevel: true, Err: kerr.SaslAuthenticationFailed, Count: -1})
		cfg := sinkConfig(kc.Addr())
		cfg.SASL = &config.KafkaSASL{Mechanism: "SCRAM-SHA-512", User: "kubefeed", PasswordFile: pw}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := kafka.New(ctx, kafka.Options{Config: cfg, Cluster: "test"})
		if err == nil {
			_ = s.Close(context.Background())
			t.Fatal("New with rejected credentials succeeded")
		}
		if !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New with rejected credentials: %v", err)
		}
	})
	t.Run("UnreadablePasswordFile", func(t *testing.T) {
		cfg := sinkConfig("127.0.0.1:1")
		cfg.SASL = &config.KafkaSASL{Mechanism: "PLAIN", User: "kubefeed", PasswordFile: filepath.Join(dir, "missing")}
		_, err := kafka.New(context.Background(), kafka.Options{Config: cfg, Cluster: "test"})
		if err == nil || !strings.Contains(err.Error(), "sasl.passwordFile") || !strings.Contains(err.Error(), "missing") {
			t.Errorf("New with a missing password file: %v", err)
		}
	})
}

func kafkatestSASL(mech, user, pass string) []kfake.Opt {
	return []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, user, pass)}
}

// With tombstones: true, a deletion is followed, on the same partition, by
// a null-value record keyed by the uid; other changes are not.
func TestTombstoneFollowsEachDeletion(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Tombstones = true
	s := newSink(t, cfg)
	mod := sinktest.Event(1, 7)
	del := sinktest.Event(1, 8)
	del.Type, del.ID = event.Deleted.Type(), event.ID(del.UID, "8", event.Deleted)
	other := sinktest.Event(2, 9)
	if err := s.Send(t.Context(), []*event.Event{mod, del, other}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var of1 []string
	nulls := 0
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		if r.Value == nil {
			nulls++
			if string(r.Key) != "uid-1" {
				t.Errorf("a null-value record keyed %q, want uid-1", r.Key)
			}
			if len(r.Headers) != 0 {
				t.Errorf("tombstone headers %v", r.Headers)
			}
		}
		if string(r.Key) == "uid-1" {
			if r.Value == nil {
				of1 = append(of1, "tombstone")
			} else {
				e, _ := eventOf(t, r)
				of1 = append(of1, e.ID)
			}
		}
	}
	if want := []string{mod.ID, del.ID, "tombstone"}; strings.Join(of1, " ") != strings.Join(want, " ") {
		t.Errorf("records of uid-1: %v, want %v", of1, want)
	}
	if nulls != 1 {
		t.Errorf("%d null-value records, want 1", nulls)
	}
}
