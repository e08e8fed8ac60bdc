package e2e

// The Kafka sink end to end: the real API server, kubefeed's exporter and
// the Kafka sink against kfake (test/kafkatest), franz-go's in-process
// implementation of the Kafka protocol. No Kafka distribution can be
// installed where these tests run; kfake answers the same produce (acks,
// idempotence), metadata, admin and fetch requests a broker does, and is
// restarted on the same port with its data to stage an outage.

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// kafkaSink builds the sink as `kubefeed run` would: topic kubefeed with 6
// partitions, provisioned.
func kafkaSink(t *testing.T, addr string) *kafka.Sink {
	t.Helper()
	c := config.Config{Sinks: []config.Sink{{Name: "bus", Kafka: &config.KafkaSink{
		Brokers: []string{addr}, Provision: &config.TopicProvision{Partitions: 6},
	}}}}
	c.SetDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := kafka.New(ctx, kafka.Options{Config: *c.Sinks[0].Kafka, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// kafkaConfig sends the burst resources of nss to the Kafka sink "bus",
// with more sinks if given.
func kafkaConfig(nss []string, moreSinks string) string {
	return "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\nworkers: 8\n" + burstWatch(nss...) +
		"sinks:\n  - {name: bus, kafka: {brokers: ['unused:9092']}}\n" + moreSinks
}

// topicLines returns the values of the topic's records merged across
// partitions by timestamp: each partition's order (and so each object's)
// is kept, and an object's deletion comes before a later object of the
// same name.
func topicLines(t *testing.T, addr string) [][]byte {
	t.Helper()
	rs, err := kafkatest.Records(addr, "kubefeed")
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Timestamp.Before(rs[j].Timestamp) })
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}

// checkTopic checks that each object's versions never go back, and with
// strict that each modified event starts from the version before it (no
// lost acks); it counts distinct events (a gap marker is on every
// partition, a retried event may be stored twice) and all records.
func checkTopic(t *testing.T, lines [][]byte, strict bool) (unique, records int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]string{}
	var evs []got
	for _, l := range lines {
		var e got
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if e.Type == event.TypeGap {
			continue
		}
		if prev := last[e.UID]; prev != "" && rvLess(e.ResourceVersion, prev) {
			t.Errorf("kafka: %s (uid %s) rv %s after rv %s", e.Subject, e.UID, e.ResourceVersion, prev)
		}
		last[e.UID] = e.ResourceVersion
		evs = append(evs, e)
	}
	if strict {
		checkOrder(t, "kafka", evs)
	}
	return len(seen), len(lines)
}

func TestKafka10kChangesRebuildListedState(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "kafka-a", nil), namespace(t, "kafka-b", nil)}
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := kafkaSink(t, kc.Addr())
	startExporter(t, kafkaConfig(nss, ""), map[string]sinks.Sink{"bus": s})
	start := time.Now()
	burst10k(t, nss)
	t.Logf("10,000 changes written in %v", time.Since(start).Round(time.Millisecond))
	c := rebuildsListed(t, func() [][]byte { return topicLines(t, kc.Addr()) }, nss...)
	if c.dups != 0 || c.rebased != 0 || c.unknownDeletes != 0 {
		t.Errorf("without failures: %d duplicates, %d rebased patches, %d unknown deletes; want none", c.dups, c.rebased, c.unknownDeletes)
	}
	n, _ := checkTopic(t, topicLines(t, kc.Addr()), true)
	// Level-based: versions may merge under load, but every object has at
	// least its added event and, for the 2000 deleted, its deleted event.
	if n < 2500+2000 || n > 10000 {
		t.Errorf("topic holds %d events for 10,000 changes", n)
	}
	t.Logf("topic holds %d events for 10,000 changes; sink stats %+v", n, s.Stats())
}

func TestKafkaOutageLosesNothing(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "kafka-outage-a", nil), namespace(t, "kafka-outage-b", nil)}
	kc := kafkatest.StartT(t, kafkatest.Options{})
	s := kafkaSink(t, kc.Addr())
	rec := &recorder{}
	startExporter(t, kafkaConfig(nss, "  - {name: rec, stdout: {}}\n"), map[string]sinks.Sink{"bus": s, "rec": rec})
	burstThroughOutage(t, nss, kc.Shutdown, kc.Restart)
	rebuildsListed(t, func() [][]byte { return topicLines(t, kc.Addr()) }, nss...)
	unique, n := checkTopic(t, topicLines(t, kc.Addr()), false)
	t.Logf("after a 20s outage: %d records stored, %d distinct events; sink stats %+v", n, unique, s.Stats())
	// The second sink never failed: it got every change while Kafka was down.
	if got := len(rec.snapshot()); got != 10000 {
		t.Errorf("healthy sink got %d events, want 10000", got)
	}
}
