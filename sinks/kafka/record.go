package kafka

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Content types on the wire.
const (
	ContentTypeStructured = "application/cloudevents+json"
	HeaderContentType     = "content-type"
)

// record builds the record of one encoded event for topic, keyed by the
// event's partitionkey extension: the object's uid (the event id when
// there is none), as the CloudEvents Kafka binding maps it.
func record(topic string, enc sinks.Encoded) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(enc.Event.PartitionKey()), Value: enc.Body, Headers: headers(enc)}
}

// structuredHeaders are every structured record's: kgo only reads a
// record's headers, so its records share them.
var structuredHeaders = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeStructured)}}

// tombstone is the null-value record of uid that follows its deletion
// (tombstones: true): compaction then drops every record of the uid.
func tombstone(topic, uid string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(uid)}
}

// headers are the CloudEvents Kafka binding's: in binary mode the ce-*
// attributes become ce_* headers and the content type content-type; in
// structured mode only content-type, application/cloudevents+json.
func headers(enc sinks.Encoded) []kgo.RecordHeader {
	if len(enc.Headers) == 0 {
		return structuredHeaders
	}
	n := 0
	for _, h := range enc.Headers {
		n += len(h[1])
	}
	// The values share one buffer, each capped at its end.
	vals := make([]byte, 0, n)
	hs := make([]kgo.RecordHeader, 0, len(enc.Headers))
	for _, h := range enc.Headers {
		k := h[0]
		switch {
		case strings.EqualFold(k, "Content-Type"):
			k = HeaderContentType
		case strings.HasPrefix(k, "ce-"):
			if u, ok := underscored[k]; ok {
				k = u
			} else {
				k = "ce_" + k[len("ce-"):]
			}
		}
		start := len(vals)
		vals = append(vals, h[1]...)
		hs = append(hs, kgo.RecordHeader{Key: k, Value: vals[start:len(vals):len(vals)]})
	}
	return hs
}

// underscored maps the ce- headers sinks.Encode writes to their Kafka
// names, so that a record's header keys are not built again each time.
var underscored = func() map[string]string {
	m := map[string]string{}
	for _, a := range []string{"specversion", "id", "source", "type", "time", "subject", "cluster", "apiversion", "kind",
		"resource", "namespace", "name", "uid", "resourceversion", "changedby", "partitionkey"} {
		m["ce-"+a] = "ce_" + a
	}
	return m
}()

// toEveryPartition copies r once per partition of its topic, each pinned to
// its partition (a gap marker, for consumers of any partition).
func toEveryPartition(ctx context.Context, r *kgo.Record, partitions int) []*kgo.Record {
	out := make([]*kgo.Record, partitions)
	pinned := context.WithValue(ctx, pinnedKey{}, true)
	for p := range out {
		c := *r
		c.Partition = int32(p)
		c.Context = pinned
		out[p] = &c
	}
	return out
}

// pinnedKey marks, in a record's context, a record whose Partition is set.
type pinnedKey struct{}

func isPinned(r *kgo.Record) bool {
	return r.Context != nil && r.Context.Value(pinnedKey{}) != nil
}

// partitioner hashes keys as Kafka's producers do (murmur2), except for
// pinned records, which keep their partition.
type partitioner struct{}

func (partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return topicPartitioner{kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

type topicPartitioner struct{ keyed kgo.TopicPartitioner }

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isPinned(r) || p.keyed.RequiresConsistency(r)
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if isPinned(r) {
		return int(r.Partition) % n
	}
	return p.keyed.Partition(r, n)
}

// everyPartition reports whether e is a marker written to every
// partition: a gap marker, or a snapshot's started or completed marker (so
// that a consumer of any partition sees a snapshot's events between its
// markers).
func everyPartition(e *event.Event) bool {
	return e.Type == event.TypeGap || event.IsSnapshotMarker(e.Type)
}
