package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/test/natstest"
)

func configMap(name string, data string) state.Record {
	return state.Record{UID: "uid-" + name, ResourceVersion: "7", Scope: "configmaps -n shop", Object: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "shop"},
		"data":     map[string]any{"blob": data},
	}}}
}

func cmKey(name string) state.Key {
	return state.Key{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Namespace: "shop", Name: name}
}

// kvRecords reads the records of sink audit as they rest in the stream.
func kvRecords(t *testing.T, url, bucket string) map[string]stored {
	t.Helper()
	msgs, err := natstest.ReadStream(url, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]stored{}
	for _, m := range msgs {
		key, ok := strings.CutPrefix(m.Subject, "$KV."+bucket+".s.audit.")
		if !ok {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(key)
		if err != nil {
			t.Fatal(err)
		}
		var s stored
		if err := json.Unmarshal(m.Data, &s); err != nil {
			t.Fatalf("%s: %v", m.Subject, err)
		}
		out[string(raw)] = s
	}
	return out
}

// TestKVOversizedRecordDoesNotWedge: one record over the server's
// max_payload is stored without its state; the records around it land,
// Sync returns, and Close too.
func TestKVOversizedRecordDoesNotWedge(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{MaxPayload: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}}, Bucket: "cp"}
	core, logs := observer.New(zap.WarnLevel)
	kv, err := OpenKV(ctx, c, true, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s, err := kv.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- kv.Run(runCtx) }()

	noise := make([]byte, 300<<10) // incompressible: gzip cannot save it
	_, _ = rand.Read(noise)
	s.Put(cmKey("huge"), configMap("huge", base64.StdEncoding.EncodeToString(noise)))
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync after an oversized record: %v", err)
	}
	for i := range 8 {
		s.Put(cmKey(fmt.Sprint("cm-", i)), configMap(fmt.Sprint("cm-", i), "small"))
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync of the records after an oversized one: %v", err)
	}
	// A later version of the huge object: counted again, not logged again.
	huge := configMap("huge", base64.StdEncoding.EncodeToString(noise))
	huge.ResourceVersion = "8"
	s.Put(cmKey("huge"), huge)
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync after the second oversized version: %v", err)
	}
	stop()
	if err := <-ran; err != nil {
		t.Errorf("final flush: %v", err)
	}
	if err := kv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := kv.shrunk.Load(); got != 2 {
		t.Errorf("shrunk = %d, want 2", got)
	}
	if n := logs.FilterMessageSnippet("without its state").Len(); n != 1 {
		t.Errorf("the shrunk record was logged %d times, want once: %v", n, logs.All())
	}

	recs := kvRecords(t, srv.URL(), "cp")
	for i := range 8 {
		r, ok := recs[keyString(cmKey(fmt.Sprint("cm-", i)))]
		if !ok || len(r.State) == 0 {
			t.Errorf("cm-%d: %+v, %v; want it with its state", i, r, ok)
		}
	}
	if r, ok := recs[keyString(cmKey("huge"))]; !ok || r.UID != "uid-huge" || r.RV != "8" || r.Scope != "configmaps -n shop" || len(r.State) != 0 {
		t.Errorf("huge: %+v, %v; want it with uid, version and scope only", r, ok)
	}

	// Restored, it is known without state: a change is sent without a
	// patch, a deletion is still seen.
	kv2, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kv2.Close()
	s2, err := kv2.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := s2.Get(cmKey("huge")); !ok || r.UID != "uid-huge" || r.Object != nil {
		t.Errorf("restored huge record %+v, %v", r, ok)
	}
}

// TestKVSyncWhileServerDown: a transient failure keeps the record dirty
// and Sync returns with an error instead of waiting; once the server is
// back the record is written.
func TestKVSyncWhileServerDown(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}}, Bucket: "cp"}
	kv, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kv.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- kv.Run(runCtx) }()

	srv.Shutdown()
	s.Put(cmKey("during"), configMap("during", "x"))
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	err = s.Sync(short)
	cancelShort()
	if err == nil {
		t.Fatal("Sync reported success while the server is down")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for {
		if err = s.Sync(ctx); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Sync after the server came back: %v", err)
	}
	stop()
	<-ran
	if err := kv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if r, ok := kvRecords(t, srv.URL(), "cp")[keyString(cmKey("during"))]; !ok || r.UID != "uid-during" {
		t.Errorf("record written during the outage: %+v, %v", r, ok)
	}
}
