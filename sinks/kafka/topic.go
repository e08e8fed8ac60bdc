package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubefeed/kubefeed/event"
)

// topicTemplate renders a topic name for an event.
type topicTemplate struct {
	tmpl    string
	cluster string
	static  bool // no placeholder other than {cluster}

	// rendered holds the topics rendered for events with an apiVersion
	// (all but gap markers), by what the template reads of them: each is
	// rendered once, not once an event (up to maxRendered of them).
	mu       sync.RWMutex
	rendered map[topicKey]renderedTopic
}

// topicKey is what a template reads of an event that has an apiVersion.
type topicKey struct{ cluster, apiVersion, resource string }

type renderedTopic struct {
	name string
	err  error
}

// maxRendered bounds the topics a template keeps rendered: one per
// resource watched, far fewer in any config.
const maxRendered = 4096

func compileTopic(tmpl, cluster string) (*topicTemplate, error) {
	if err := checkTopicTemplate(tmpl); err != nil {
		return nil, err
	}
	rest := strings.ReplaceAll(tmpl, "{cluster}", "")
	return &topicTemplate{tmpl: tmpl, cluster: cluster, static: !strings.Contains(rest, "{")}, nil
}

// render fills the template, once per cluster, apiVersion and resource
// (expand). Values are made topic-safe: any byte Kafka does not allow
// becomes '_'; the core group is "core". The result is checked, since a
// long resource name can push it past Kafka's limit.
func (t *topicTemplate) render(e *event.Event) (string, error) {
	if !strings.Contains(t.tmpl, "{") {
		return t.tmpl, nil
	}
	if e.APIVersion == "" {
		return t.expand(e)
	}
	k := topicKey{cluster: e.Cluster, apiVersion: e.APIVersion, resource: e.Resource}
	t.mu.RLock()
	r, ok := t.rendered[k]
	t.mu.RUnlock()
	if ok {
		return r.name, r.err
	}
	r.name, r.err = t.expand(e)
	t.mu.Lock()
	if t.rendered == nil {
		t.rendered = map[topicKey]renderedTopic{}
	}
	if len(t.rendered) < maxRendered {
		t.rendered[k] = r
	}
	t.mu.Unlock()
	return r.name, r.err
}

// expand fills the template for e.
func (t *topicTemplate) expand(e *event.Event) (string, error) {
	cluster := e.Cluster
	if cluster == "" {
		cluster = t.cluster
	}
	s := strings.NewReplacer("{cluster}", safe(cluster), "{group}", safe(group(e)), "{resource}", safe(e.Resource)).Replace(t.tmpl)
	return s, checkTopic(s)
}

// TopicFor is the topic the sink writes the events (and gap markers) of
// one resource to: tmpl rendered for cluster, the API group (""
// for the core group) and the resource, as the sink renders it.
func TopicFor(tmpl, cluster, group, resource string) (string, error) {
	t, err := compileTopic(tmpl, cluster)
	if err != nil {
		return "", err
	}
	apiVersion := "v1"
	if group != "" {
		apiVersion = group + "/v1"
	}
	return t.render(&event.Event{Cluster: cluster, APIVersion: apiVersion, Resource: resource})
}

// group is the API group of an event; for a gap marker, which has no
// apiVersion, the group of its scope (data.scope is "resource.group ...").
func group(e *event.Event) string {
	if e.APIVersion != "" {
		if i := strings.IndexByte(e.APIVersion, '/'); i >= 0 {
			return e.APIVersion[:i]
		}
		return "core"
	}
	if g, ok := e.Data.(*event.GapData); ok {
		scope, _, _ := strings.Cut(g.Scope, " ")
		if grp, ok := strings.CutPrefix(scope, e.Resource+"."); ok && grp != "" {
			return grp
		}
	}
	return "core"
}

func safe(v string) string {
	if v == "" {
		return "_"
	}
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Errors of the topic checks that are the config's fault, not the
// network's: New fails on them rather than starting.
var (
	errTopicMissing = errors.New("topic does not exist")
	errTopicLimit   = errors.New("topic's max.message.bytes is below maxMessageBytes")
)

// topics checks (or creates) each topic once and answers partition counts.
type topics struct {
	cl        *kgo.Client
	adm       *kadm.Client
	provision *TopicProvision
	maxBytes  int
	mu        sync.Mutex
	ready     map[string]bool
}

// ensure makes sure topic exists (creating it when provisioning) and that
// it admits records of maxBytes. A topic that passed is not checked again.
func (t *topics) ensure(ctx context.Context, topic string) error {
	t.mu.Lock()
	ok := t.ready[topic]
	t.mu.Unlock()
	if ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	n, err := t.partitions(ctx, topic)
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition) && t.provision != nil:
		p, rf := t.provision.Partitions, t.provision.ReplicationFactor
		if p == 0 {
			p = -1 // the broker's default
		}
		if rf == 0 {
			rf = -1
		}
		resp, err := t.adm.CreateTopic(ctx, p, rf, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("%w: %s: create it or set provision in the sink's config", errTopicMissing, topic)
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("topic %s has no partitions", topic)
	}
	if err := t.checkLimit(ctx, topic); err != nil {
		return err
	}
	t.mu.Lock()
	t.ready[topic] = true
	t.mu.Unlock()
	return nil
}

// forget makes the next ensure check topic again.
func (t *topics) forget(topic string) {
	t.mu.Lock()
	delete(t.ready, topic)
	t.mu.Unlock()
}

// checkLimit compares the topic's effective max.message.bytes with the
// producer's batch limit. Without permission to describe configs it
// trusts the config.
func (t *topics) checkLimit(ctx context.Context, topic string) error {
	rcs, err := t.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("describe topic %s: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" {
			continue
		}
		if v, err := strconv.Atoi(c.MaybeValue()); err == nil && v < t.maxBytes {
			return fmt.Errorf("%w: topic %s accepts records up to %d bytes (max.message.bytes), the sink sends up to %d: set maxMessageBytes to at most %d or raise the topic's max.message.bytes",
				errTopicLimit, topic, v, t.maxBytes, v)
		}
	}
	return nil
}

// partitions returns the number of partitions of topic, asking a broker
// (not kgo's metadata cache, which may predate the topic's creation); the
// error wraps kerr.UnknownTopicOrPartition when it does not exist.
func (t *topics) partitions(ctx context.Context, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, t.cl)
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			return 0, fmt.Errorf("metadata of topic %s: %w", topic, err)
		}
		return len(mt.Partitions), nil
	}
	return 0, fmt.Errorf("metadata of topic %s: %w", topic, kerr.UnknownTopicOrPartition)
}
