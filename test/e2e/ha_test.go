package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// Two replicas with leader election and the JetStream checkpoint: the leader
// is SIGKILLed during a burst, the standby takes over from the shared
// checkpoint, and the stream is complete.
func TestLeaderFailoverKeepsTheStreamComplete(t *testing.T) {
	ensureWidgetCRD(t)
	ns := namespace(t, "ha-data", nil)
	namespace(t, "ha-lease", nil)
	srv := natstest.StartT(t, natstest.Options{})
	cfg := writeFile(t, "c.yaml", "apiVersion: kubefeed.io/v1alpha1\nkind: Config\ncluster: test\n"+burstWatch(ns)+fmt.Sprintf(`sinks:
  - name: js
    jetstream: {servers: [%[1]s], stream: KUBEFEED, provision: {duplicateWindow: 10m}}
checkpoint:
  jetstream: {servers: [%[1]s], bucket: kubefeed-checkpoint}
leaderElection: {enabled: true, namespace: ha-lease, name: kubefeed, leaseDuration: 2s, renewDeadline: 1500ms, retryPeriod: 300ms}
`, srv.URL()))
	a := startReplica(t, cfg)
	waitLog(t, a, "became the leader")
	// The burst starts once the leader's first lists are in: objects its
	// first list finds are its baseline (initialList: skip), never sent,
	// and a later change of one would reach a consumer that never had it.
	waitLog(t, a, "caches synced; delivering")
	b := startReplica(t, cfg)
	waitLog(t, b, "standing by")

	done := make(chan struct{})
	go func() {
		defer close(done)
		randomBurst(t, 7, 1200, []string{ns}, []schema.GroupVersionResource{configMaps, widgets})
	}()
	time.Sleep(700 * time.Millisecond)
	a.kill()
	<-done
	waitLog(t, b, "became the leader")
	c := rebuildsListed(t, func() [][]byte { return streamLines(t, srv.URL()) }, ns)
	if len(c.gaps) == 0 || c.gaps[0] != "restart" {
		t.Errorf("gap markers after failover: %v, want a restart gap", c.gaps)
	}
	t.Logf("after failover: %d gaps %v, %d recovered, %d duplicate ids", len(c.gaps), c.gaps, c.recovered, c.dups)
	b.kill()
}

// startReplica runs `kubefeed run` without waiting for a sync (a standby
// never syncs).
func startReplica(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	return startDaemonWait(t, cfgPath, "waiting for the lease")
}

func waitLog(t *testing.T, d *daemon, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", text, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
