package kafka_test

import (
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// types: knative (binary mode, as a KafkaSource in front of a Broker reads
// it): ce_type is ApiServerSource's, ce_partitionkey is the record key, and
// the deletion, named delete, is still followed by its tombstone.
func TestKnativeTypesKeepKeyAndTombstones(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	cfg := sinkConfig(kc.Addr())
	cfg.Mode, cfg.Types, cfg.Tombstones = config.ModeBinary, "knative", true
	s := newSink(t, cfg)
	add := sinktest.Event(1, 1)
	add.Type, add.ID = event.Added.Type(), event.ID(add.UID, "1", event.Added)
	mod := sinktest.Event(1, 2)
	del := sinktest.Event(1, 3)
	del.Type, del.ID = event.Deleted.Type(), event.ID(del.UID, "3", event.Deleted)
	if err := s.Send(t.Context(), []*event.Event{add, mod, del}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range records(t, kc.Addr(), "kubefeed") {
		if r.Value == nil {
			got = append(got, "tombstone:"+string(r.Key))
			continue
		}
		typ, _ := header(r, "ce_type")
		if pk, n := header(r, "ce_partitionkey"); pk != string(r.Key) || n != 1 {
			t.Errorf("record %s: ce_partitionkey %q (%d times), key %q", typ, pk, n, r.Key)
		}
		for k, want := range map[string]string{"ce_kind": "ConfigMap", "ce_apiversion": "v1", "ce_name": "obj-1", "ce_namespace": "ns"} {
			if v, _ := header(r, k); v != want {
				t.Errorf("record %s: %s %q, want %q", typ, k, v, want)
			}
		}
		got = append(got, typ+":"+string(r.Key))
	}
	want := []string{event.KnativeTypeAdd + ":uid-1", event.KnativeTypeUpdate + ":uid-1", event.KnativeTypeDelete + ":uid-1", "tombstone:uid-1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("records %v, want %v", got, want)
	}
}
