package checkpoint

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// Unset, replicas is 1 for a new bucket (as before the key existed); a
// count the server cannot hold (3 on a single server) fails OpenKV with
// the server's reason. The R3 cases run on a real 3-node cluster in
// test/e2e (TestKVCheckpointBucketReplicasOnACluster, jetstream_cluster_test.go).
func TestOpenKVReplicas(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx := context.Background()
	c := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}}, Bucket: "r"}
	kv, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = kv.Close()
	if got := natstest.StreamReplicas(t, srv.URL(), "KV_"+"r"); got != 1 {
		t.Errorf("new bucket without replicas: %d replicas, want 1", got)
	}
	// Opened again (the bucket exists, R1): unchanged.
	if kv, err = OpenKV(ctx, c, true, nil); err != nil {
		t.Fatal(err)
	}
	_ = kv.Close()
	if got := natstest.StreamReplicas(t, srv.URL(), "KV_"+"r"); got != 1 {
		t.Errorf("existing bucket: %d replicas, want 1", got)
	}

	c.Bucket, c.Replicas = "r3", 3
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if kv, err = OpenKV(ctx, c, true, nil); err == nil {
		_ = kv.Close()
		t.Fatal("a bucket with 3 replicas on a single server: no error")
	}
	if !strings.Contains(err.Error(), "checkpoint bucket r3") || !strings.Contains(strings.ToLower(err.Error()), "replicas") {
		t.Errorf("error %q does not name the bucket and the replicas", err)
	}
	t.Logf("R3 on a single server: %v", err)
}
