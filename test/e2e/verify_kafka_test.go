package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/test/kafkatest"
)

// verify reads a Kafka sink's topics as it reads a JetStream stream: a
// topic per resource (template), binary mode with tombstones, 3
// partitions; the same exit codes.
func TestVerifyKafkaSink(t *testing.T) {
	kc := kafkatest.StartT(t, kafkatest.Options{})
	ns := namespace(t, "verify-kafka", nil)
	dir := t.TempDir()
	config := func(brokers string) string {
		return fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: test
watch:
  - {resource: configmaps, namespaces: [%[1]s]}
  - {resource: secrets, namespaces: [%[1]s]}
sinks:
  - name: bus
    kafka: {brokers: [%[2]s], topic: "kubefeed.{cluster}.{resource}", mode: binary, tombstones: true, provision: {partitions: 3}}
checkpoint:
  file: {path: %[3]s}
`, ns, brokers, filepath.Join(dir, "checkpoint.db"))
	}
	cfg := writeFile(t, "c.yaml", config(kc.Addr()))
	_, dyn := clients(t)
	ctx := context.Background()
	cms := dyn.Resource(configMaps).Namespace(ns)

	d := startDaemon(t, cfg)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := cms.Create(ctx, cm(name, nil, map[string]any{"k": "v"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Object["data"] = map[string]any{"k": "v2", "big": "9007199254740993"}
	if a, err = cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	aRV := a.GetResourceVersion()
	if err := cms.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// added a, b, c; modified a; deleted b and its tombstone; read with a
	// Kafka client of its own.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := kafkatest.Records(kc.Addr(), "kubefeed.test.configmaps")
		if err == nil && len(rs) >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the topic holds %d records (%v), want 6\n%s", len(rs), err, d.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := d.term(t); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.logs.String())
	}
	// No secret was ever written: its topic does not exist, and reads as
	// empty.
	r := runVerify(t, cfg, "bus")
	if r.code != 0 || !strings.Contains(r.stdout, "ok: the feed matches the cluster (2 objects compared; topics kubefeed.test.configmaps, kubefeed.test.secrets, 6 records read from 3 partitions)") ||
		!strings.Contains(r.stdout, "note: topic kubefeed.test.secrets does not exist") {
		t.Fatalf("after a clean stop: %s", r)
	}

	// While kubefeed is down: a new object, a changed one, a deleted one.
	if _, err := cms.Create(ctx, cm("late", nil, map[string]any{"k": "v"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := cms.Get(ctx, "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	feedRV := c.GetResourceVersion()
	c.Object["data"] = map[string]any{"k": "changed"}
	if c, err = cms.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r = runVerify(t, cfg, "bus")
	if r.code != 3 {
		t.Fatalf("with changes kubefeed missed: %s", r)
	}
	for _, want := range []string{
		"MISSING  configmaps/" + ns + "/late  not in the feed",
		"EXTRA    configmaps/" + ns + "/a  in the feed at resourceVersion " + aRV,
		fmt.Sprintf("VERSION  configmaps/%s/c  the feed has resourceVersion %s, the cluster %s; they differ at /data/k", ns, feedRV, c.GetResourceVersion()),
		"3 objects differ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r)
		}
	}
	if !strings.Contains(r.stderr, "3 of 3 objects differ between sink bus and the cluster") {
		t.Errorf("stderr: %s", r.stderr)
	}

	// kubefeed recovers what it missed: the feed matches again.
	d = startDaemon(t, cfg)
	deadline = time.Now().Add(60 * time.Second)
	for r = runVerify(t, cfg, "bus", "-o", "json"); r.code != 0; r = runVerify(t, cfg, "bus", "-o", "json") {
		if time.Now().After(deadline) {
			t.Fatalf("verify after the restart: %s\nkubefeed:\n%s", r, d.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rep struct {
		verifyJSON
		Topics []string `json:"topics"`
		Kafka  struct {
			Records, Tombstones int
			Partitions          []struct{ Topic string }
		} `json:"kafka"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Match || rep.Compared != 2 || len(rep.Gaps) == 0 || rep.Gaps[0].Reason != "restart" ||
		rep.Kafka.Tombstones != 2 || len(rep.Kafka.Partitions) != 3 {
		t.Errorf("after the restart (%v): %+v\n%s", err, rep, r.stdout)
	}
	d.kill()

	// Brokers that do not answer: exit 2, within the ping's bound.
	down := writeFile(t, "down.yaml", config("127.0.0.1:1"))
	if r := runVerify(t, down, "bus"); r.code != 2 || !strings.Contains(r.stderr, "kafka 127.0.0.1:1 not reachable") {
		t.Errorf("unreachable brokers: %s", r)
	}
}
