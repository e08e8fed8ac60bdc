package kafka_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

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
		var ext struct{ PartitionKey string }
		if err := json.Unmarshal(r.Value, &ext); err != nil || ext.PartitionKey != string(r.Key) {
			t.Errorf("record %s: partitionkey %q, want the record key %q", e.ID, ext.PartitionKey, r.Key)
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
		"ce_partitionkey": "uid-1",
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

func header(r *kgo.Record, k string) (string, int) {
	v, n := "", 0
	for _, h := range r.Headers {
		if h.Key == k {
			v, n = string(h.Value), n+1
		}
	}
	return v, n
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

// A snapshot's started and completed markers reach every partition, around
// the snapshot events, so a consumer of one partition sees its objects'
// snapshot events between them.
func TestSnapshotMarkersReachEveryPartition(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Provision.Partitions = 3
	s := newSink(t, cfg)
	defer s.Close(context.Background())
	marker := func(typ, which string) *event.Event {
		return &event.Event{SpecVersion: event.SpecVersion, ID: event.SnapshotMarkerID("s1", "", "configmaps", "", which), Source: "kubefeed/test",
			Type: typ, Time: time.Unix(1, 0).UTC(), DataContentType: event.DataContentType, Cluster: "test", APIVersion: "v1", Kind: "ConfigMap",
			Resource: "configmaps", Data: &event.SnapshotData{ID: "s1", Resource: "configmaps"}}
	}
	batch := []*event.Event{marker(event.TypeSnapshotStarted, "started")}
	for o := 0; o < 6; o++ {
		e := sinktest.Event(o, 1)
		e.Type, e.ID = event.Snapshot.Type(), event.SnapshotID(e.UID, e.ResourceVersion, "s1")
		batch = append(batch, e)
	}
	for _, b := range [][]*event.Event{batch, {marker(event.TypeSnapshotCompleted, "completed")}} {
		if err := s.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	byPartition := map[int32][]string{}
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		e, _ := eventOf(t, r)
		byPartition[r.Partition] = append(byPartition[r.Partition], e.Type)
	}
	for p := int32(0); p < 3; p++ {
		types := byPartition[p]
		if len(types) < 2 || types[0] != event.TypeSnapshotStarted || types[len(types)-1] != event.TypeSnapshotCompleted {
			t.Errorf("partition %d: %v, want started first and completed last", p, types)
		}
	}
}
