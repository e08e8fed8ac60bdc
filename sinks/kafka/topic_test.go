package kafka_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/kafkatest"
)

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

// TopicFor names the topics the sink routed to above, for readers.
func TestTopicForIsTheRoutedTopic(t *testing.T) {
	for _, tc := range []struct{ tmpl, group, resource, want string }{
		{"kubefeed.{cluster}.{group}.{resource}", "example.com", "widgets", "kubefeed.test.example.com.widgets"},
		{"kubefeed.{cluster}.{group}.{resource}", "", "configmaps", "kubefeed.test.core.configmaps"},
		{"kubefeed", "apps", "deployments", "kubefeed"},
		{"k.{cluster}", "", "pods", "k.test"},
	} {
		if got, err := kafka.TopicFor(tc.tmpl, "test", tc.group, tc.resource); err != nil || got != tc.want {
			t.Errorf("TopicFor(%q, %q, %q) = %q, %v; want %q", tc.tmpl, tc.group, tc.resource, got, err, tc.want)
		}
	}
	if _, err := kafka.TopicFor("k.{nope}", "test", "", "pods"); err == nil {
		t.Error("an unknown placeholder is no error")
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
