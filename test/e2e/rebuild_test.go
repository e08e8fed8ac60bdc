package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/file"
)

// consumer rebuilds cluster state from a stream of events the way an audit
// pipeline would: added sets, modified applies the RFC 6902 patch to what it
// has (and checks the result against data.object), deleted removes.
type consumer struct {
	t     *testing.T
	state map[string]map[string]any // subject -> object
	seen  map[string]bool           // event ids
	dups  int
	// After a lost ack a sink may hold an event that kubefeed retried as a
	// later one: a patch then starts from an older version than the
	// consumer has (it takes data.object), or a deletion names an object
	// the consumer never saw. Both are counted; without failures both are 0.
	rebased, unknownDeletes int
	gaps                    []string // reasons of io.kubefeed.gap markers
	recovered               int      // events marked recovered
	// history is, per subject, the events applied to it (type, uid,
	// version, id), for a failure's message.
	history map[string][]string
}

func newConsumer(t *testing.T) *consumer {
	return &consumer{t: t, state: map[string]map[string]any{}, seen: map[string]bool{}, history: map[string][]string{}}
}

func (c *consumer) apply(raw []byte) {
	c.t.Helper()
	var e got
	if err := json.Unmarshal(raw, &e); err != nil {
		c.t.Fatalf("bad event %s: %v", raw, err)
	}
	if c.seen[e.ID] {
		c.dups++
		return
	}
	c.seen[e.ID] = true
	c.history[e.Subject] = append(c.history[e.Subject], fmt.Sprintf("%s uid=%s rv=%s prev=%s id=%s recovered=%v", strings.TrimPrefix(e.Type, "io.kubefeed.resource."), e.UID, e.ResourceVersion, e.Data.PreviousResourceVersion, e.ID, e.Data.Recovered))
	if e.Type == event.TypeGap {
		var g struct {
			Data event.GapData `json:"data"`
		}
		_ = json.Unmarshal(raw, &g)
		c.gaps = append(c.gaps, g.Data.Reason)
		return
	}
	if e.Data.Recovered {
		c.recovered++
	}
	switch e.change() {
	case "added":
		c.state[e.Subject] = e.Data.Object
	case "deleted":
		// A deletion applies to the object with its uid only: after a
		// restart, a recovered deletion of an old incarnation may follow the
		// new one's added event, which the consumer already holds.
		have, ok := c.state[e.Subject]
		if !ok || have["metadata"].(map[string]any)["uid"] != e.UID {
			c.unknownDeletes++
			return
		}
		delete(c.state, e.Subject)
	case "modified":
		have, ok := c.state[e.Subject]
		if !ok {
			c.t.Fatalf("modified %s that the consumer never had; its events in the stream:\n  %s", e.Subject, strings.Join(c.history[e.Subject], "\n  "))
		}
		md := have["metadata"].(map[string]any)
		if rv := md["resourceVersion"]; rv != e.Data.PreviousResourceVersion || md["uid"] != e.UID {
			c.rebased++
			c.state[e.Subject] = e.Data.Object
			return
		}
		pj, _ := json.Marshal(e.Data.Patch)
		patch, err := jsonpatch.DecodePatch(pj)
		if err != nil {
			c.t.Fatalf("patch %s: %v", pj, err)
		}
		hj, _ := json.Marshal(have)
		out, err := patch.Apply(hj)
		if err != nil {
			c.t.Fatalf("apply %s: %v", pj, err)
		}
		var next map[string]any
		_ = json.Unmarshal(out, &next)
		next["metadata"].(map[string]any)["resourceVersion"] = e.ResourceVersion
		if !reflect.DeepEqual(next, e.Data.Object) {
			c.t.Errorf("%s: patched state differs from data.object\npatched: %s\nobject:  %s", e.Subject, out, mustJSON(e.Data.Object))
		}
		c.state[e.Subject] = next
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// listed returns what a LIST of the scope returns, by subject, as JSON values
// without managedFields.
func listed(t *testing.T, namespaces []string, resources map[schema.GroupVersionResource]string) map[string]map[string]any {
	t.Helper()
	_, dyn := clients(t)
	return listedOn(t, dyn, namespaces, resources)
}

// listedOn is listed through the API server of dyn.
func listedOn(t *testing.T, dyn dynamic.Interface, namespaces []string, resources map[schema.GroupVersionResource]string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for gvr, prefix := range resources {
		for _, ns := range namespaces {
			l, err := dyn.Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range l.Items {
				unstructured.RemoveNestedField(it.Object, "metadata", "managedFields")
				var v map[string]any
				_ = json.Unmarshal([]byte(mustJSON(it.Object)), &v)
				out[fmt.Sprintf("%s/namespaces/%s/%s/%s", prefix, ns, gvr.Resource, it.GetName())] = v
			}
		}
	}
	return out
}

// randomBurst creates, updates and deletes objects of several resources at
// random, and returns when done.
func randomBurst(t *testing.T, seed int64, ops int, namespaces []string, gvrs []schema.GroupVersionResource) {
	t.Helper()
	_, dyn := clients(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	live := map[string]*unstructured.Unstructured{}
	for i := 0; i < ops; i++ {
		gvr := gvrs[r.Intn(len(gvrs))]
		ns := namespaces[r.Intn(len(namespaces))]
		name := fmt.Sprintf("o%d", r.Intn(12))
		key := gvr.Resource + "/" + ns + "/" + name
		client := dyn.Resource(gvr).Namespace(ns)
		o, exists := live[key]
		var err error
		switch {
		case !exists:
			var obj *unstructured.Unstructured
			if gvr == widgets {
				obj = widget(name, map[string]any{"n": int64(i)})
			} else {
				obj = cm(name, map[string]string{"gen": fmt.Sprint(i)}, map[string]any{"n": fmt.Sprint(i)})
			}
			live[key], err = client.Create(ctx, obj, metav1.CreateOptions{})
		case r.Intn(4) == 0:
			delete(live, key)
			err = client.Delete(ctx, name, metav1.DeleteOptions{})
		default:
			if gvr == widgets {
				o.Object["spec"] = map[string]any{"n": int64(i), "list": []any{int64(i), "x"}}
			} else {
				o.Object["data"] = map[string]any{"n": fmt.Sprint(i), fmt.Sprintf("k%d", r.Intn(3)): "v"}
				o.SetLabels(map[string]string{"gen": fmt.Sprint(i)})
			}
			live[key], err = client.Update(ctx, o, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("op %d on %s: %v", i, key, err)
		}
	}
}

// burstResources are what randomBurst and burst10k write, with their API
// path prefixes.
var burstResources = map[schema.GroupVersionResource]string{configMaps: "/api/v1", widgets: "/apis/example.com/v1"}

// burstWatch is the config's watch list for those resources in nss.
func burstWatch(nss ...string) string {
	list := strings.Join(nss, ", ")
	return "watch:\n  - {resource: configmaps, namespaces: [" + list + "]}\n  - {resource: widgets.example.com, namespaces: [" + list + "]}\n"
}

// rebuildsListed rebuilds from read() until it equals a LIST of the burst
// resources in nss.
func rebuildsListed(t *testing.T, read func() [][]byte, nss ...string) *consumer {
	t.Helper()
	return eventuallyRebuilds(t, read, func() map[string]map[string]any { return listed(t, nss, burstResources) })
}

// eventually rebuilds from read() until it equals the LIST, or fails.
func eventuallyRebuilds(t *testing.T, read func() [][]byte, want func() map[string]map[string]any) *consumer {
	t.Helper()
	// After a sink outage, a key may wait out its backoff cap (RetryCap, 30s)
	// plus an ack timeout before its retry: allow well over that.
	deadline := time.Now().Add(exporter.RetryCap + 60*time.Second)
	for {
		c := newConsumer(t)
		for _, line := range read() {
			c.apply(line)
		}
		w := want()
		if reflect.DeepEqual(c.state, w) {
			return c
		}
		if time.Now().After(deadline) {
			for _, k := range sortedKeys(w) {
				if !reflect.DeepEqual(c.state[k], w[k]) {
					t.Errorf("%s:\n rebuilt %s\n listed  %s", k, mustJSON(c.state[k]), mustJSON(w[k]))
				}
			}
			for _, k := range sortedKeys(c.state) {
				if _, ok := w[k]; !ok {
					t.Errorf("%s: rebuilt but not listed", k)
				}
			}
			t.FailNow()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func TestConsumerRebuildsListedStateFromFileSink(t *testing.T) {
	ensureWidgetCRD(t)
	nss := []string{namespace(t, "rebuild-a", nil), namespace(t, "rebuild-b", nil)}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	fs, err := file.New(file.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	startExporter(t, "apiVersion: kubefeed.io/v1alpha1\nkind: Config\n"+burstWatch(nss...)+"sinks:\n  - {name: file, file: {path: unused}}\n",
		map[string]sinks.Sink{"file": fs})
	randomBurst(t, 42, 300, nss, []schema.GroupVersionResource{configMaps, widgets})
	// kube-root-ca.crt does not exist without a controller-manager, so the
	// namespaces hold only what the burst made.
	c := rebuildsListed(t, func() [][]byte { return readLines(t, path) }, nss...)
	if c.dups != 0 || c.rebased != 0 || c.unknownDeletes != 0 {
		t.Errorf("without failures: %d duplicates, %d rebased patches, %d unknown deletes; want none", c.dups, c.rebased, c.unknownDeletes)
	}
}
