package exporter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// watchListEncoding opens one watch-list stream through the watch client
// against hs and returns the Accept-Encoding the server saw.
func watchListEncoding(t *testing.T, tls bool) string {
	t.Helper()
	var mu sync.Mutex
	var enc []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		enc = append(enc, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	})
	var hs *httptest.Server
	cfg := &rest.Config{}
	if tls {
		hs = httptest.NewTLSServer(h)
		cfg.TLSClientConfig.Insecure = true
	} else {
		hs = httptest.NewServer(h)
	}
	defer hs.Close()
	cfg.Host = hs.URL
	wc, err := newWatchClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	w, err := wc.watch(context.Background(), schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "",
		metav1.ListOptions{SendInitialEvents: &yes, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	for range w.ResultChan() {
	}
	mu.Lock()
	defer mu.Unlock()
	if len(enc) != 1 {
		t.Fatalf("%d requests", len(enc))
	}
	return enc[0]
}

// TestAudit4WatchesAskForIdentity: the watch client, which also carries
// the watch-list streams (the first sync and every relist), asks for an
// uncompressed response over TLS and over plain HTTP. client-go ignores
// DisableCompression for a config with no TLS options, dialer or proxy
// (http.DefaultTransport), so the request says so itself.
func TestAudit4WatchesAskForIdentity(t *testing.T) {
	for _, tls := range []bool{true, false} {
		if enc := watchListEncoding(t, tls); enc != "identity" {
			t.Errorf("watch-list request (TLS %v) sent Accept-Encoding %q, want identity", tls, enc)
		}
	}
}
