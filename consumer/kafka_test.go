package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/jsonpatch"
	kafkasink "github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// kafkaSinkFor is kubefeed's own Kafka sink, so the test reads what it
// really produces.
func kafkaSinkFor(t *testing.T, addr, mode string, tombstones bool) *kafkasink.Sink {
	t.Helper()
	c := config.Config{Sinks: []config.Sink{{Name: "bus", Kafka: &config.KafkaSink{
		Brokers: []string{addr}, Topic: "kubefeed", Mode: mode, Tombstones: tombstones,
	}}}}
	c.SetDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := kafkasink.New(ctx, kafkasink.Options{Config: *c.Sinks[0].Kafka, Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestReadKafka(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{Topics: []string{"kubefeed"}, Partitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	structured := kafkaSinkFor(t, kc.Addr(), "", true)
	binary := kafkaSinkFor(t, kc.Addr(), "binary", false)
	send := func(s *kafkasink.Sink, evs ...*event.Event) {
		t.Helper()
		if err := s.Send(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	v1 := cmObj("web", "u1", "10", map[string]any{"a": "1"})
	v2 := cmObj("web", "u1", "11", map[string]any{"a": "2"})
	db := cmObj("db", "u9", "12", map[string]any{"x": "y"})
	g := &event.Event{SpecVersion: event.SpecVersion, ID: "gap.1", Source: "kubefeed/test", Type: event.TypeGap, Time: time.Now().UTC(),
		DataContentType: event.DataContentType, Cluster: "test", Resource: "configmaps", Namespace: "shop",
		Data: &event.GapData{Scope: "configmaps -n shop", Reason: "restart"}}
	send(structured, g) // one copy per partition
	send(structured, producerEvent("test", event.Added, v1, "", nil))
	send(binary, producerEvent("test", event.Modified, v2, "10", []jsonpatch.Op{{Op: "replace", Path: "/data/a", Value: "2"}}))
	send(binary, producerEvent("test", event.Added, db, "", nil))
	send(structured, producerEvent("test", event.Deleted, db, "", nil)) // and its tombstone
	send(structured, producerEvent("test", event.Added, v1, "", nil))   // sent again: a duplicate by id
	elsewhere := kafkaSinkFor(t, kc.Addr(), "", false)
	send(elsewhere, producerEvent("other", event.Added, cmObj("web", "u7", "3", nil), "", nil)) // another cluster's: skipped

	var gaps []Gap
	s := New(Options{OnGap: func(g Gap) { gaps = append(gaps, g) }})
	client := []kgo.Opt{kgo.SeedBrokers(kc.Addr())}
	res, err := ReadKafka(ctx, s, KafkaReadOptions{Client: client, Topics: []string{"kubefeed"}, Cluster: "test", FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// 3 gap copies, 6 events (1 another cluster's), 1 tombstone.
	if res.Records != 10 || res.Tombstones != 1 || res.OtherClusters != 1 || len(res.Partitions) != 3 || res.Forgot() || res.FirstTime.IsZero() {
		t.Errorf("read %+v, want 10 records (1 tombstone, 1 of another cluster) of 3 partitions", res)
	}
	total := int64(0)
	for _, p := range res.Partitions {
		total += p.End
		if p.From != 0 || p.LogStart != 0 || (p.End > 0 && p.Last != p.End-1) || int64(p.Records) != p.End {
			t.Errorf("partition %+v, want read from 0 to its end", p)
		}
	}
	if total != 10 {
		t.Errorf("high watermarks add up to %d, want 10", total)
	}
	got, ok := s.Get(cmKey)
	if !ok || mustJSON(got.Object) != mustJSON(v2) || got.EventID != "u1.11.modified" {
		t.Errorf("held %+v, want version 11 rebuilt by the binary-mode patch", got)
	}
	if s.Len() != 1 || s.Stats().Duplicates != 3 {
		t.Errorf("%d objects, stats %+v; want web only, and as duplicates the gap marker's other two copies and the event sent again", s.Len(), s.Stats())
	}
	if len(gaps) != 1 || gaps[0].Reason != "restart" {
		t.Errorf("gaps %+v, want the marker once although every partition has it", gaps)
	}

	// The tail: only what came after, into the same state.
	send(binary, producerEvent("test", event.Deleted, v2, "", nil))
	tail, err := ReadKafka(ctx, s, KafkaReadOptions{Client: client, Topics: []string{"kubefeed"}, Start: res.Next(), FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if tail.Records != 1 || s.Len() != 0 {
		t.Errorf("tail %+v, %d objects; want the deletion only", tail, s.Len())
	}
	res.Merge(tail)
	if res.Records != 11 {
		t.Errorf("merged %+v, want 11 records", res)
	}
	// Past the end: nothing, at once (a wait would time the test out).
	if r, err := ReadKafka(ctx, New(Options{}), KafkaReadOptions{Client: client, Topics: []string{"kubefeed"}, Start: res.Next(), FetchWait: time.Minute}); err != nil || r.Records != 0 {
		t.Errorf("past the end: %+v, %v", r, err)
	}

	if _, err := ReadKafka(ctx, New(Options{}), KafkaReadOptions{Client: client, Topics: []string{"nope"}}); !errors.Is(err, ErrTopicNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing topic: %v", err)
	}
	r, err := ReadKafka(ctx, New(Options{}), KafkaReadOptions{Client: client, Topics: []string{"nope", "kubefeed"}, SkipMissing: true, FetchWait: time.Second})
	if err != nil || len(r.Missing) != 1 || r.Missing[0] != "nope" || r.Records != 11 {
		t.Errorf("missing topic skipped: %+v, %v", r, err)
	}
}

// Records removed before the read (retention, delete records) are told
// by the log start; the read goes on from what is left.
func TestReadKafkaAfterRecordsWereRemoved(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{Topics: []string{"kubefeed"}, Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := kafkaSinkFor(t, kc.Addr(), "", false)
	for i, name := range []string{"a", "b", "c"} {
		if err := s.Send(ctx, []*event.Event{producerEvent("test", event.Added, cmObj(name, "u"+name, "1"+name, nil), "", nil)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "kubefeed", Partition: 0, At: 2})
	if _, err := kadm.NewClient(cl).DeleteRecords(ctx, del); err != nil {
		t.Fatal(err)
	}
	st := New(Options{})
	res, err := ReadKafka(ctx, st, KafkaReadOptions{Client: []kgo.Opt{kgo.SeedBrokers(kc.Addr())}, Topics: []string{"kubefeed"}, FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Forgot() || res.Records != 1 || st.Len() != 1 || res.Partitions[0].LogStart != 2 {
		t.Errorf("read %+v, %d objects; want the last record only, and the loss told", res, st.Len())
	}
}

// A record that is no kubefeed event stops the read with its position, or
// goes to OnError and is skipped.
func TestReadKafkaBadRecord(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{Topics: []string{"kubefeed"}, Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addr()), kgo.DefaultProduceTopic("kubefeed"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	good, _ := event.Marshal(producerEvent("test", event.Added, cmObj("web", "u1", "10", nil), "", nil))
	for _, r := range []*kgo.Record{
		{Value: []byte("not json")},
		{Value: []byte(`{"x":1}`), Headers: []kgo.RecordHeader{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("i")}, {Key: "ce_type", Value: []byte("io.kubefeed.resource.added")}}},
		{Value: good},
	} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	o := KafkaReadOptions{Client: []kgo.Opt{kgo.SeedBrokers(kc.Addr())}, Topics: []string{"kubefeed"}, FetchWait: time.Second}
	if _, err := ReadKafka(ctx, New(Options{}), o); err == nil || !strings.Contains(err.Error(), "topic kubefeed partition 0 offset 0") {
		t.Errorf("bad record: %v, want its position", err)
	}
	var bad []int64
	o.OnError = func(r *kgo.Record, err error) error {
		bad = append(bad, r.Offset)
		return nil
	}
	st := New(Options{})
	if res, err := ReadKafka(ctx, st, o); err != nil || res.Records != 3 || st.Len() != 1 {
		t.Errorf("skipping: %+v, %d objects, %v", res, st.Len(), err)
	}
	if len(bad) != 2 || bad[0] != 0 || bad[1] != 1 {
		t.Errorf("bad offsets %v, want 0 and 1 (the binary one misses resource, name, uid)", bad)
	}
}

// Merge adds everything a tail read counted, names as missing only the
// topics still missing at the tail (a templated topic created between the
// reads was read), and tells records removed between the reads before
// they were read.
func TestMergeOfATailRead(t *testing.T) {
	first := KafkaReadResult{
		Partitions:    []PartitionRead{{Topic: "a", Partition: 0, From: 0, End: 5, Last: 4, Records: 5}},
		Missing:       []string{"b", "c"},
		Records:       5,
		OtherClusters: 1,
	}
	tail := KafkaReadResult{
		Partitions: []PartitionRead{
			{Topic: "a", Partition: 0, LogStart: 8, From: 8, End: 9, Last: 8, Records: 1}, // 5..7 removed unread
			{Topic: "b", Partition: 0, From: 0, End: 2, Last: 1, Records: 2},
		},
		Missing:       []string{"c"},
		Records:       3,
		OtherClusters: 2,
	}
	first.Merge(tail)
	if first.Records != 8 || first.OtherClusters != 3 {
		t.Errorf("merged %d records, %d of other clusters; want 8 and 3", first.Records, first.OtherClusters)
	}
	if len(first.Missing) != 1 || first.Missing[0] != "c" {
		t.Errorf("missing %v, want [c] (b was read by the tail)", first.Missing)
	}
	if !first.Forgot() {
		t.Errorf("partition a lost offsets 5..7 between the reads, unread: Forgot is false (%+v)", first.Partitions)
	}
}
