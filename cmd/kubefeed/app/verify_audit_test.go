package app

import (
	"testing"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// TestAuditTruncatedEntryUnderLabelSelector: an object too large for the
// sink reaches the feed as its identity only (data.truncated: object; the
// identity has no labels). Under a rule with a labelSelector, verify must
// still see that the feed holds it (same uid, same resourceVersion): it is
// not "missing from the feed".
func TestAuditTruncatedEntryUnderLabelSelector(t *testing.T) {
	s := testScope(t, config.Watch{LabelSelector: "app=web", InitialList: config.InitialListEmit}, nil)
	st := consumer.New(consumer.Options{})
	// What sinks.Truncate(e, TruncatedObject) leaves of a labelled object.
	ev := `{"id":"u1.5.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"big","uid":"u1","resourceversion":"5",` +
		`"data":{"truncated":"object","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big","namespace":"shop","uid":"u1","resourceVersion":"5"}}}}`
	e, err := consumer.Decode([]byte(ev))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(e); err != nil {
		t.Fatal(err)
	}
	k := consumer.Key{Resource: "configmaps", Namespace: "shop", Name: "big"}
	live := map[consumer.Key]*liveObject{k: {obj: map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}}}, uid: "u1", rv: "5", scope: s}}
	diffs, _, _ := compareAll(st, live, []*verifyScope{s}, consumer.ReadResult{Messages: 1, StreamFirstSeq: 1})
	for _, d := range diffs {
		t.Errorf("%s: %s (feed %+v, cluster %+v); the feed holds it at the cluster's version", d.Object, d.Problem, d.Feed, d.Cluster)
	}
}
