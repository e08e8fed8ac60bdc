package kafka_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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

func header(r *kgo.Record, k string) (string, int) {
	v, n := "", 0
	for _, h := range r.Headers {
		if h.Key == k {
			v, n = string(h.Value), n+1
		}
	}
	return v, n
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

func TestKeyIsTheUIDAndOneObjectStaysOnOnePartition(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Provision.Partitions = 6
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	for v := 1; v <= 5; v++ {
		var batch []*event.Event
		for o := 0; o < 20; o++ {
			batch = append(batch, sinktest.Event(o, v))
		}
		if err := s.Send(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	rs := records(t, kc.Addr(), "kubefeed")
	if len(rs) != 100 {
		t.Fatalf("topic holds %d records, want 100", len(rs))
	}
	// Kafka's own partitioning (murmur2 of the key), so other producers of
	// the same keys agree.
	kafkaPartition := kgo.StickyKeyPartitioner(nil).ForTopic("kubefeed")
	partOf, last := map[string]int32{}, map[string]string{}
	used := map[int32]bool{}
	for _, r := range rs {
		e, _ := eventOf(t, r)
		if string(r.Key) != e.UID {
			t.Errorf("record %s: key %q, want the uid %q", e.ID, r.Key, e.UID)
		}
		if want := kafkaPartition.Partition(&kgo.Record{Key: r.Key}, 6); int(r.Partition) != want {
			t.Errorf("uid %s on partition %d, Kafka's partitioner says %d", e.UID, r.Partition, want)
		}
		if p, ok := partOf[e.UID]; ok && p != r.Partition {
			t.Errorf("uid %s on partitions %d and %d", e.UID, p, r.Partition)
		}
		partOf[e.UID] = r.Partition
		used[r.Partition] = true
		if prev := last[e.UID]; prev != "" && e.ResourceVersion <= prev {
			t.Errorf("uid %s: version %s after %s", e.UID, e.ResourceVersion, prev)
		}
		last[e.UID] = e.ResourceVersion
	}
	if len(used) < 3 {
		t.Errorf("20 objects used only %d of 6 partitions", len(used))
	}
}

func TestStructuredMode(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := newSink(t, sinkConfig(kc.Addr()))
	defer s.Close(context.Background())
	e := sinktest.Event(1, 1)
	if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	r := records(t, kc.Addr(), "kubefeed")[0]
	if ct, n := header(r, "content-type"); ct != "application/cloudevents+json" || n != 1 || len(r.Headers) != 1 {
		t.Errorf("headers %v, want only content-type: application/cloudevents+json", r.Headers)
	}
	got, data := eventOf(t, r)
	if got.ID != e.ID || got.SpecVersion != "1.0" || got.UID != e.UID || data.Object["kind"] != "ConfigMap" {
		t.Errorf("value: %s", r.Value)
	}
}

func TestBinaryModeFollowsTheKafkaBinding(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Mode = config.ModeBinary
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	e := sinktest.Event(1, 7)
	e.APIVersion, e.Resource, e.Kind = "example.com/v1", "widgets", "Widget"
	e.Time = time.Date(2026, 11, 28, 15, 4, 5, 123456000, time.UTC)
	if err := s.Send(context.Background(), []*event.Event{e}); err != nil {
		t.Fatal(err)
	}
	r := records(t, kc.Addr(), "kubefeed")[0]
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": e.ID, "ce_type": e.Type, "ce_source": e.Source, "ce_subject": e.Subject,
		"ce_time": "2026-11-28T15:04:05.123456Z", "content-type": "application/json",
		"ce_cluster": "test", "ce_apiversion": "example.com/v1", "ce_kind": "Widget", "ce_resource": "widgets",
		"ce_namespace": "ns", "ce_name": "obj-1", "ce_uid": "uid-1", "ce_resourceversion": "7",
	}
	for k, v := range want {
		if got, n := header(r, k); got != v || n != 1 {
			t.Errorf("header %s = %q (%d times), want %q", k, got, n, v)
		}
	}
	if len(r.Headers) != len(want) {
		t.Errorf("%d headers, want %d: %v", len(r.Headers), len(want), r.Headers)
	}
	var data event.ChangeData
	if err := json.Unmarshal(r.Value, &data); err != nil || data.Object["kind"] != "ConfigMap" {
		t.Errorf("binary value is not the data: %s", r.Value)
	}
	if string(r.Key) != "uid-1" {
		t.Errorf("key %q", r.Key)
	}
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

func TestGapMarkerReachesEveryPartition(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Provision.Partitions = 4
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	g := gapEvent("configmaps -n ns", "configmaps", "ns")
	batch := []*event.Event{g}
	for o := 0; o < 8; o++ {
		batch = append(batch, sinktest.Event(o, 1))
	}
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// Every partition starts with the gap marker, before the recovered
	// events that follow it.
	first := map[int32]string{}
	gaps := map[int32]int{}
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		e, _ := eventOf(t, r)
		if _, ok := first[r.Partition]; !ok {
			first[r.Partition] = e.ID
		}
		if e.Type == event.TypeGap {
			gaps[r.Partition]++
			if string(r.Key) != g.ID {
				t.Errorf("gap record key %q, want its id %q", r.Key, g.ID)
			}
		}
	}
	for p := int32(0); p < 4; p++ {
		if gaps[p] != 1 || first[p] != g.ID {
			t.Errorf("partition %d: %d gap records, first record %s", p, gaps[p], first[p])
		}
	}
	if st := s.Stats(); st.GapRecords != 4 || st.Produced != 12 {
		t.Errorf("stats %+v, want 4 gap records of 12", st)
	}
}

func TestTopicTemplateRoutesEventsAndGaps(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Topic = "kubefeed.{cluster}.{group}.{resource}"
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	w := sinktest.Event(1, 1)
	w.APIVersion, w.Resource, w.Kind = "example.com/v1", "widgets", "Widget"
	batch := []*event.Event{gapEvent("widgets.example.com -n ns -l a=b", "widgets", "ns"), w, gapEvent("configmaps", "configmaps", ""), sinktest.Event(2, 1)}
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string][]string{
		"kubefeed.test.example.com.widgets": {batch[0].ID, w.ID},
		"kubefeed.test.core.configmaps":     {batch[2].ID, batch[3].ID},
	} {
		rs := records(t, kc.Addr(), topic)
		var ids []string
		for _, r := range rs {
			e, _ := eventOf(t, r)
			if e.Type != event.TypeGap || len(ids) == 0 || ids[len(ids)-1] != e.ID {
				ids = append(ids, e.ID)
			}
		}
		// 3 partitions: the gap is on each, the event on one of them.
		if len(rs) != 4 || !contains(ids, want[0]) || !contains(ids, want[1]) {
			t.Errorf("topic %s: %d records %v, want the gap on 3 partitions and %s", topic, len(rs), ids, want[1])
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestMissingTopicWithoutProvisionIsAClearError(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Provision = nil
	_, err := kafka.New(context.Background(), kafka.Options{Config: cfg, Cluster: "test"})
	if err == nil || !strings.Contains(err.Error(), "kubefeed: create it or set provision") {
		t.Errorf("New without topic: %v", err)
	}
}

func TestTopicLimitBelowMaxMessageBytesIsAClearError(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	limit := "100000"
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &limit}, "kubefeed")
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = kafka.New(context.Background(), kafka.Options{Config: sinkConfig(kc.Addr()), Cluster: "test"})
	if err == nil || !strings.Contains(err.Error(), "topic kubefeed accepts records up to 100000 bytes (max.message.bytes)") ||
		!strings.Contains(err.Error(), "set maxMessageBytes to at most 100000") {
		t.Errorf("New with a topic limit below maxMessageBytes: %v", err)
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
