package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubefeed/kubefeed/sinks"
)

// Objects near the API server's 1 MiB limit arrive whole through the
// streamed initial list (watch-list, decoded by exporter/wirejson), to a
// sink that fails every second send: each is emitted once its retry
// succeeds, with its data byte for byte.
func TestStreamedInitialListCarriesObjectsNearOneMiB(t *testing.T) {
	ns := namespace(t, "streambig", nil)
	_, dyn := clients(t)
	cms := dyn.Resource(configMaps).Namespace(ns)
	want := map[string]string{}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("big%d", i)
		// ~950 KiB of data, escapes included: \" \\ \u00e9 and a newline.
		v := strings.Repeat(fmt.Sprintf("%d\"\\é\n", i), 950<<10/6)
		if _, err := cms.Create(context.Background(), cm(name, nil, map[string]any{"v": v}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want[name] = v
	}
	rec := &recorder{failEvery: 2}
	startExporter(t, fmt.Sprintf("apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - {resource: configmaps, namespaces: [%s], initialList: emit}\nsinks:\n  - {name: rec, stdout: {}}\n", ns),
		map[string]sinks.Sink{"rec": rec})
	evs := rec.waitFor(t, 3)
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.Name]++
		data, _ := e.Data.Object["data"].(map[string]any)
		if got, _ := data["v"].(string); got != want[e.Name] {
			t.Errorf("%s %s: data of %d bytes differs from the %d bytes created", e.change(), e.Name, len(got), len(want[e.Name]))
		}
		if _, ok := e.Data.Object["metadata"].(map[string]any)["managedFields"]; ok {
			t.Errorf("%s carries managedFields", e.Name)
		}
	}
	for name := range want {
		if seen[name] != 1 {
			t.Errorf("%s: %d events, want one added", name, seen[name])
		}
	}
}
