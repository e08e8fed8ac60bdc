package exporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// watchServer serves one watch stream (the given lines) and records the
// requests it got.
type watchServer struct {
	mu    sync.Mutex
	reqs  []string
	lines []string
	code  int
}

func (s *watchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" accept="+r.Header.Get("Accept"))
	lines, code := s.lines, s.code
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if code != 0 {
		w.WriteHeader(code)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}`)
		return
	}
	for _, l := range lines {
		fmt.Fprint(w, l)
	}
}

type decoded struct {
	Type watch.EventType
	Obj  any
}

func drain(t *testing.T, w watch.Interface) []decoded {
	t.Helper()
	var out []decoded
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return out
			}
			d := decoded{Type: ev.Type, Obj: ev.Object}
			if ev.Type == watch.Error {
				d.Obj = apierrors.FromObject(ev.Object).Error()
			}
			out = append(out, d)
		case <-timeout:
			t.Fatal("watch never ended")
		}
	}
}

// The watch client decodes a stream exactly as the dynamic client does,
// sends the same request, and fails the same ways.
func TestWatchClientDecodesLikeTheDynamicClient(t *testing.T) {
	streams := map[string][]string{
		"events": {
			`{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"a/b~c","namespace":"ns","resourceVersion":"5","managedFields":[{"manager":"m"}]},"count":1,"big":123456789012345678,"huge":123456789012345678901234567890,"f":1.5,"neg":-7,"e":1e3,"n":null,"s":"x\u2028y\n","arr":[1,2.5,{"k":[]}],"empty":{}}}` + "\n",
			// No newline between events, and one split across lines.
			`{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"x","resourceVersion":"6"},"count":2}}{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"Event","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}`,
			"\n{\"type\":\"DELETED\",\n\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"8\"}}}\n",
			`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (8)","reason":"Expired","code":410}}` + "\n",
		},
		"bad type":     {`{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"a"}}}`, `{"type":"CHANGED","object":{"kind":"Event"}}`},
		"missing kind": {`{"type":"ADDED","object":{"apiVersion":"v1","metadata":{"name":"a"}}}`},
		"bad json":     {`{"type":"ADDED","object":{"kind":"Event","x":[1,}}`},
		"truncated":    {`{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"a"`},
		"no object":    {`{"type":"ADDED"}`},
		"hostile values": {
			`{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"h","managed\u0046ields":[{"manager":"m"}],"labels":{"a/b":"1","a~b":"2","":"3"}},` +
				`"n":[9007199254740993,-9007199254740993,9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809,-0,-0.0,0.1,1E2,1.0,1e-400],` +
				`"s":["\u0000","\ud800","\udc00\ud800","\ud83d\ude00","\ud83dx","` + "\xff\xfe" + `"],"dup":1,"dup":{"x":[]},"null":null}}` + "\n",
		},
		"large object": {`{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big","managedFields":[{"manager":"m"}]},"data":{"a":"` + strings.Repeat("0123456789abcdef", 1<<16) + `"}}}`},
	}
	gvr := schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}
	opts := metav1.ListOptions{LabelSelector: "a=b", FieldSelector: "metadata.name!=x", ResourceVersion: "4", AllowWatchBookmarks: true, TimeoutSeconds: new(int64)}
	for name, lines := range streams {
		t.Run(name, func(t *testing.T) {
			srv := &watchServer{lines: lines}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			cfg := &rest.Config{Host: hs.URL}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			wc, err := newWatchClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			dw, err := dyn.Resource(gvr).Namespace("ns").Watch(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			want := drain(t, dw)
			// The scopes' transform drops managedFields; the watch client
			// does it before parsing.
			for _, d := range want {
				if u, ok := d.Obj.(*unstructured.Unstructured); ok {
					unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
				}
			}
			fw, err := wc.watch(context.Background(), gvr, "ns", opts, false)
			if err != nil {
				t.Fatal(err)
			}
			got := drain(t, fw)
			// A stream that cannot be decoded ends with an ERROR event in
			// both; only the wording of the decoding error differs.
			for _, evs := range [][]decoded{got, want} {
				if n := len(evs); n > 0 && evs[n-1].Type == watch.Error {
					if msg := evs[n-1].Obj.(string); strings.Contains(msg, "unable to decode an event from the watch stream") {
						evs[n-1].Obj = "decoding failed"
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded:\n%#v\nthe dynamic client:\n%#v", got, want)
			}
			if len(want) == 0 && name != "truncated" {
				t.Error("the stream decoded to nothing")
			}
			if srv.reqs[0] != srv.reqs[1] {
				t.Errorf("request %q, the dynamic client sends %q", srv.reqs[1], srv.reqs[0])
			}
		})
	}
}

// A watch refused at once (410) is the same StatusError.
func TestWatchClientRefusedWatch(t *testing.T) {
	hs := httptest.NewServer(&watchServer{code: http.StatusGone})
	defer hs.Close()
	cfg := &rest.Config{Host: hs.URL}
	dyn, _ := dynamic.NewForConfig(cfg)
	wc, _ := newWatchClient(cfg)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "events"}
	_, derr := dyn.Resource(gvr).Watch(context.Background(), metav1.ListOptions{})
	_, ferr := wc.watch(context.Background(), gvr, "", metav1.ListOptions{}, false)
	var se *apierrors.StatusError
	if !errors.As(ferr, &se) || !apierrors.IsResourceExpired(ferr) || derr == nil || ferr.Error() != derr.Error() {
		t.Fatalf("error %v (%T), the dynamic client's %v", ferr, ferr, derr)
	}
}

func TestCollectionPath(t *testing.T) {
	for _, tc := range []struct {
		gvr  schema.GroupVersionResource
		ns   string
		want string
	}{
		{schema.GroupVersionResource{Version: "v1", Resource: "events"}, "", "/api/v1/events"},
		{schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "shop", "/api/v1/namespaces/shop/pods"},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "a", "/apis/apps/v1/namespaces/a/deployments"},
	} {
		if got := collectionPath(tc.gvr, tc.ns); got != tc.want {
			t.Errorf("%v %q: %s, want %s", tc.gvr, tc.ns, got, tc.want)
		}
	}
	if strings.Contains(collectionPath(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, ""), "namespaces") {
		t.Error("cluster-scoped path has a namespace")
	}
}

// Decoding a stream of 2,000 core Events (the CPU of the watch side).
func benchWatch(b *testing.B, fast bool) {
	var sb strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&sb, `{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"name":"web-%d.17a2b3c4d5e6f708","namespace":"bench","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","resourceVersion":"%d","creationTimestamp":"2026-11-28T15:00:00Z","managedFields":[{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-11-28T15:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:count":{},"f:firstTimestamp":{},"f:involvedObject":{},"f:lastTimestamp":{},"f:message":{},"f:reason":{},"f:source":{"f:component":{},"f:host":{}},"f:type":{}}}]},"involvedObject":{"kind":"Pod","namespace":"bench","name":"web-%d","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","apiVersion":"v1","resourceVersion":"123456","fieldPath":"spec.containers{app}"},"reason":"BackOff","message":"Back-off restarting failed container app in pod web-%d_bench(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)","source":{"component":"kubelet","host":"node-1"},"firstTimestamp":"2026-11-28T15:00:00Z","lastTimestamp":"2026-11-28T15:00:00Z","count":1,"type":"Warning","eventTime":null,"reportingComponent":"kubelet","reportingInstance":"node-1"}}`+"\n", i, i, i, i)
	}
	hs := httptest.NewServer(&watchServer{lines: []string{sb.String()}})
	defer hs.Close()
	// No client-side rate limit: client-go's default (5 QPS, burst 10)
	// made every op after the tenth wait for its token, about 100 ms.
	cfg := &rest.Config{Host: hs.URL, QPS: -1}
	dyn, _ := dynamic.NewForConfig(cfg)
	wc, _ := newWatchClient(cfg)
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "events"}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		var w watch.Interface
		var err error
		if fast {
			w, err = wc.watch(context.Background(), gvr, "bench", metav1.ListOptions{}, false)
		} else {
			w, err = dyn.Resource(gvr).Namespace("bench").Watch(context.Background(), metav1.ListOptions{})
		}
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for range w.ResultChan() {
			n++
		}
		if n != 2000 {
			b.Fatalf("%d events", n)
		}
	}
	// On a shared machine the time is mostly waiting; the CPU is the cost.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process used, every goroutine's (the test
// server's too), with the runtime's.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkWatchDecodeDynamic(b *testing.B) { benchWatch(b, false) }
func BenchmarkWatchDecodeFast(b *testing.B)    { benchWatch(b, true) }

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
		metav1.ListOptions{SendInitialEvents: &yes, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true}, false)
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

// TestWatchesAskForIdentity: the watch client, which also carries
// the watch-list streams (the first sync and every relist), asks for an
// uncompressed response over TLS and over plain HTTP. client-go ignores
// DisableCompression for a config with no TLS options, dialer or proxy
// (http.DefaultTransport), so the request says so itself.
func TestWatchesAskForIdentity(t *testing.T) {
	for _, tls := range []bool{true, false} {
		if enc := watchListEncoding(t, tls); enc != "identity" {
			t.Errorf("watch-list request (TLS %v) sent Accept-Encoding %q, want identity", tls, enc)
		}
	}
}
