package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/freeport"
)

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestMetricsAfterABurst(t *testing.T) {
	ns := namespace(t, "metrics", nil)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`apiVersion: kubefeed.io/v1alpha1
kind: Config
watch:
  - {resource: configmaps, namespaces: [%s]}
sinks:
  - name: file
    file: {path: %s/events.jsonl}
checkpoint:
  file: {path: %s/cp.db}
metrics: {address: "%s"}
`, ns, dir, dir, addr))
	d := startDaemon(t, cfg)
	defer d.kill()
	_, dyn := clients(t)
	ctx := context.Background()
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := dyn.Resource(configMaps).Namespace(ns).Create(ctx, cm(fmt.Sprintf("m%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, fmt.Sprintf("m%d", i), types.MergePatchType, []byte(`{"data":{"a":"b"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if err := dyn.Resource(configMaps).Namespace(ns).Delete(ctx, fmt.Sprintf("m%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(readLines(t, filepath.Join(dir, "events.jsonl"))) < 2*n+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	text := scrape(t, addr)
	total := 0.0
	for _, typ := range []string{"ADDED", "MODIFIED", "DELETED"} {
		v := metricValue(t, text, `kubefeed_events_delivered_total{resource="configmaps",sink="file",type="`+typ+`"}`)
		total += v
	}
	lines := float64(len(readLines(t, filepath.Join(dir, "events.jsonl"))))
	if total != lines || metricValue(t, text, `kubefeed_events_delivered_total{resource="configmaps",sink="file",type="DELETED"}`) != 5 {
		t.Errorf("delivered counters sum to %v, file holds %v events; DELETED=%v", total, lines,
			metricValue(t, text, `kubefeed_events_delivered_total{resource="configmaps",sink="file",type="DELETED"}`))
	}
	if c := metricValue(t, text, `kubefeed_delivery_latency_seconds_count{sink="file"}`); c < 25 || c > lines {
		t.Errorf("latency histogram count %v for %v events", c, lines)
	}
	for _, series := range []string{
		`kubefeed_queue_depth{sink="file"}`, `kubefeed_ready`, `kubefeed_checkpoint_flushes_total`,
		`kubefeed_informer_synced{scope="configmaps -n metrics"}`, `kubefeed_informer_objects{scope="configmaps -n metrics"}`,
	} {
		if metricValue(t, text, series) < 0 {
			t.Errorf("no series %s", series)
		}
	}
	if v := metricValue(t, text, `kubefeed_informer_objects{scope="configmaps -n metrics"}`); v != n-5 {
		t.Errorf("informer objects = %v, want %d", v, n-5)
	}
	if strings.Contains(text, `name="m1"`) {
		t.Error("object names in labels")
	}
	// The exposition passes promtool's lint.
	promtool, err := cluster.Binary("promtool")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
