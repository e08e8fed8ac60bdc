package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	kfconsumer "github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/checkpoint"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// writeConfigMapsFor makes random creates, updates and deletes of the
// ConfigMaps o0…o39 of ns, one at a time, until d has passed, and returns
// how many it made.
func writeConfigMapsFor(t *testing.T, ns string, seed int64, d time.Duration) int {
	t.Helper()
	_, dyn := clients(t)
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace(ns)
	r := rand.New(rand.NewSource(seed))
	live := map[string]*unstructured.Unstructured{}
	ops := 0
	for end := time.Now().Add(d); time.Now().Before(end); ops++ {
		name := fmt.Sprintf("o%d", r.Intn(40))
		o, exists := live[name]
		var err error
		switch {
		case !exists:
			live[name], err = cms.Create(ctx, cm(name, map[string]string{"gen": fmt.Sprint(ops)}, map[string]any{"n": fmt.Sprint(ops)}), metav1.CreateOptions{})
		case r.Intn(4) == 0:
			delete(live, name)
			err = cms.Delete(ctx, name, metav1.DeleteOptions{})
		default:
			o.Object["data"] = map[string]any{"n": fmt.Sprint(ops), fmt.Sprintf("k%d", r.Intn(3)): strings.Repeat("v", r.Intn(200))}
			o.SetLabels(map[string]string{"gen": fmt.Sprint(ops)})
			live[name], err = cms.Update(ctx, o, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("op %d on %s: %v", ops, name, err)
			return ops
		}
	}
	return ops
}

// Issue 23: kubefeed on a 3-node JetStream cluster (real nats-server
// processes), with an R3 stream and an R3 checkpoint bucket. During ~20s
// of random ConfigMap changes the node that leads the stream, and holds the
// sink's connection, is SIGKILLed and restarted 4s later. Nothing is lost:
// the stream rebuilds the LISTed state, each uid's events are in
// resourceVersion order, no id is stored twice, `kubefeed verify` exits 0,
// and the R3 checkpoint lets a restarted kubefeed go on without sending
// anything again. Under a minute (about 30s).
func TestJetStreamClusterNodeKilledMidLoadLosesNothing(t *testing.T) {
	start := time.Now()
	ns := namespace(t, "js-cluster-kill", nil)
	c := natstest.StartCluster(t, 3)
	servers := strings.Join(c.URLs(), ", ")
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
sinks:
  - name: js
    jetstream: {servers: [%[2]s], name: kubefeed-sink, stream: KUBEFEED, provision: {replicas: 3, duplicateWindow: 10m}}
checkpoint:
  jetstream: {servers: [%[2]s], name: kubefeed-checkpoint, bucket: kubefeed-checkpoint, replicas: 3}
`, ns, servers))
	d := startKubefeedReady(t, cfg)
	_, dyn := clients(t)
	if got := natstest.StreamReplicas(t, c.URL(), "KUBEFEED"); got != 3 {
		t.Fatalf("stream KUBEFEED has %d replicas, want 3", got)
	}
	if got := natstest.StreamReplicas(t, c.URL(), "KV_kubefeed-checkpoint"); got != 3 {
		t.Fatalf("checkpoint bucket has %d replicas, want 3", got)
	}
	// The hardest node to lose: the stream's leader, which also holds the
	// sink's connection (its publishes and their acks in flight).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	victim := c.NodeOfClient("kubefeed-sink")
	if victim < 0 {
		t.Fatal("no node holds the sink's connection (kubefeed-sink)")
	}
	if err := c.MoveStreamLeader(ctx, "KUBEFEED", victim); err != nil {
		t.Fatal(err)
	}
	ckptNode := c.NodeOfClient("kubefeed-checkpoint")
	t.Logf("setup %v: stream leader and sink connection on %s, checkpoint connection on node %d",
		time.Since(start).Round(time.Millisecond), c.Name(victim), ckptNode)

	var ops atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		ops.Store(int64(writeConfigMapsFor(t, ns, 23, 20*time.Second)))
	}()
	time.Sleep(6 * time.Second)
	if now, err := c.StreamLeader(ctx, "KUBEFEED"); err == nil && now != victim {
		t.Logf("stream leadership moved to %s before the kill: killing it instead", c.Name(now))
		victim = now
	}
	c.Kill(victim)
	killedAt := time.Now()
	time.Sleep(4 * time.Second)
	c.Restart(victim)
	t.Logf("%s SIGKILLed 6s into the load, restarted after %v", c.Name(victim), time.Since(killedAt).Round(time.Millisecond))
	<-done
	if t.Failed() {
		t.FailNow()
	}
	loadEnd := time.Now()
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d.exited() {
		t.Fatalf("kubefeed exited (%v)", d.waitErr)
	}

	read := func() [][]byte { return streamLines(t, c.URL()) }
	cons := eventuallyRebuilds(t, read, func() map[string]map[string]any {
		return listed(t, []string{ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"})
	})
	caughtUp := time.Since(loadEnd).Round(time.Millisecond)
	lines := read()
	n, unique := checkStream(t, lines) // no id twice; per-subject patch chain and order
	// Every uid's events in resourceVersion order: increasing, except that
	// a deletion kubefeed inferred (marked recovered: the name's newer
	// incarnation had replaced its watch tombstone while kubefeed was
	// behind) carries the last known state, so the version sent last.
	last := map[string]string{}
	byUID := map[string][]got{}
	var bad []string
	for i, l := range lines {
		var e got
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if e.UID == "" {
			continue // a gap marker
		}
		e.raw = []byte(fmt.Sprint(i + 1)) // the stream sequence, for the report
		byUID[e.UID] = append(byUID[e.UID], e)
		inferred := e.change() == "deleted" && e.Data.Recovered && e.ResourceVersion == last[e.UID]
		if prev, ok := last[e.UID]; ok && !rvLess(prev, e.ResourceVersion) && !inferred {
			bad = append(bad, e.UID)
		}
		last[e.UID] = e.ResourceVersion
	}
	for _, uid := range bad {
		var b strings.Builder
		for _, e := range byUID[uid] {
			fmt.Fprintf(&b, "\n  seq %s %s rv %s prev %s recovered %v", e.raw, e.ID, e.ResourceVersion, e.Data.PreviousResourceVersion, e.Data.Recovered)
		}
		t.Errorf("uid %s (%s): events not in resourceVersion order:%s", uid, byUID[uid][0].Subject, b.String())
	}
	// A patch from a version the consumer does not hold would be a lost
	// or reordered event. A deletion of a uid the consumer never held is
	// not: an object created and deleted while kubefeed was behind is
	// reported by its deletion only (level-based).
	if cons.rebased != 0 {
		t.Errorf("%d patches start from a version the consumer does not hold; want none", cons.rebased)
	}
	objects := len(listed(t, []string{ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"}))
	verifyMatches(t, cp.Kubeconfig(), cfg, "js", objects)
	if !strings.Contains(d.logs.String(), "nats disconnected") {
		t.Errorf("kubefeed never logged the lost connection; log:\n%s", d.logs.String())
	}
	t.Logf("%d writes; stream holds %d events (%d unique ids), %d objects alive, %d deletions of uids never announced, gaps %v; caught up %v after the load; total %v",
		ops.Load(), n, unique, objects, cons.unknownDeletes, cons.gaps, caughtUp, time.Since(start).Round(time.Millisecond))
	if code := d.term(30 * time.Second); code != 0 {
		t.Fatalf("kubefeed exit code after SIGTERM: %d", code)
	}

	// The R3 checkpoint kept every record through the kill: a restart
	// with no change in between emits nothing (a lost record would come
	// back as an added event or a gap marker), and the next change flows.
	before := len(read())
	d = startKubefeedReady(t, cfg)
	time.Sleep(2 * time.Second)
	if after := read(); len(after) != before {
		var b strings.Builder
		for _, l := range after[before:] {
			fmt.Fprintf(&b, "\n  %.200s", l)
		}
		t.Errorf("a restart without changes emitted %d events:%s", len(after)-before, b.String())
	}
	x, err := dyn.Resource(configMaps).Namespace(ns).Create(context.Background(), cm("after-restart", nil, map[string]any{"k": "v"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitStreamEvent(t, c.URL(), string(x.GetUID()), "added")
	if code := d.term(30 * time.Second); code != 0 {
		t.Errorf("kubefeed exit code after SIGTERM: %d", code)
	}
}

// checkpoint.jetstream.replicas: set, the bucket is created with it; unset,
// an existing bucket keeps its count (kubefeed used to update it to 1).
func TestKVCheckpointBucketReplicasOnACluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func(bucket string, replicas int) {
		t.Helper()
		kv, err := checkpoint.OpenKV(ctx, config.JetStreamCheckpoint{
			NATSConnection: config.NATSConnection{Servers: c.URLs()}, Bucket: bucket, Replicas: replicas,
		}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	open("new", 3)
	if got := natstest.StreamReplicas(t, c.URL(), "KV_new"); got != 3 {
		t.Errorf("bucket created with replicas 3 has %d", got)
	}
	open("new", 0)
	if got := natstest.StreamReplicas(t, c.URL(), "KV_new"); got != 3 {
		t.Errorf("R3 bucket opened without replicas has %d, want 3 kept", got)
	}
	js := natstest.JetStream(t, c.URL())
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "operator", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	open("operator", 0)
	if got := natstest.StreamReplicas(t, c.URL(), "KV_operator"); got != 3 {
		t.Errorf("operator's R3 bucket opened without replicas has %d, want 3 kept", got)
	}
	open("fresh", 0)
	if got := natstest.StreamReplicas(t, c.URL(), "KV_fresh"); got != 1 {
		t.Errorf("bucket created without replicas has %d, want 1", got)
	}
}

// Issue 23: each Fetch of the ordered consumer that consumer.ReadJetStream
// (and so `kubefeed verify`) reads with creates the server's consumer
// anew; on a cluster the first pull could reach the client's server
// before the new consumer's interest did and fail with "no responders"
// (9 of 10 reads of 1000 messages in batches of 16 failed). Now the fetch
// is tried again, and every read is complete.
func TestReadJetStreamOnACluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := natstest.JetStream(t, c.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"kubefeed.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		uid, rv, name := fmt.Sprintf("uid-%d", i), fmt.Sprint(100+i), fmt.Sprintf("cm-%d", i)
		obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv}}
		b, err := event.Marshal(&event.Event{
			SpecVersion: event.SpecVersion, ID: event.ID(uid, rv, event.Added), Source: "kubefeed/test", Type: event.Added.Type(),
			Subject: "/api/v1/namespaces/shop/configmaps/" + name, Time: time.Now().UTC(), DataContentType: event.DataContentType,
			Cluster: "test", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "shop", Name: name,
			UID: uid, ResourceVersion: rv, Data: &event.ChangeData{Object: obj},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "kubefeed.test.core.configmaps.shop.added", b); err != nil {
			t.Fatal(err)
		}
	}
	for r := range 5 {
		st := kfconsumer.New(kfconsumer.Options{})
		res, err := kfconsumer.ReadJetStream(ctx, js, st, kfconsumer.ReadOptions{Stream: "KUBEFEED", Batch: 16})
		if err != nil || res.Messages != n || st.Len() != n {
			t.Errorf("read %d: %d messages, %d objects, %v; want %d", r, res.Messages, st.Len(), err, n)
		}
	}
}
