package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	kfconsumer "github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/shard"
)

// checkShardedFeed waits until the stream, rebuilt by package consumer
// (which keeps a name's incarnations apart by uid: they come from
// different shards), equals a LIST of the namespace, with no incarnation
// left over; then it checks that each uid's events are in resourceVersion
// order and that no id is stored twice, and runs `kubefeed verify`. clean
// (every handover was a drain): no patch may start from a version the
// consumer does not hold, and no exception to the order is made.
func (e *shardEnv) checkShardedFeed(t *testing.T, ops int64, clean bool) {
	t.Helper()
	loadEnd := time.Now()
	want := func() map[string]string {
		out := map[string]string{}
		for subject, o := range listedOn(t, e.dyn, []string{e.ns}, map[schema.GroupVersionResource]string{configMaps: "/api/v1"}) {
			out[subject] = mustJSON(o)
		}
		return out
	}
	var (
		st    *kfconsumer.State
		lines [][]byte
		w     map[string]string
	)
	deadline := time.Now().Add(90 * time.Second)
	for {
		lines = streamLines(t, e.nats.URL())
		st = kfconsumer.New(kfconsumer.Options{})
		for i, l := range lines {
			ev, err := kfconsumer.Decode(l)
			if err == nil {
				err = st.Apply(ev)
			}
			if err != nil {
				t.Fatalf("stream message %d: %v", i+1, err)
			}
		}
		w = want()
		got := map[string]string{}
		for _, en := range st.AllIncarnations() {
			subject := fmt.Sprintf("/api/v1/namespaces/%s/configmaps/%s", en.Key.Namespace, en.Key.Name)
			if _, dup := got[subject]; dup {
				subject += " (uid " + en.UID + ")"
			}
			got[subject] = normalJSON(t, en.Object)
		}
		if reflect.DeepEqual(got, w) {
			break
		}
		if time.Now().After(deadline) {
			for _, k := range sortedKeys(w) {
				if got[k] != w[k] {
					t.Errorf("%s:\n rebuilt %s\n listed  %s", k, got[k], w[k])
				}
			}
			for _, k := range sortedKeys(got) {
				if _, ok := w[k]; !ok {
					t.Errorf("%s: rebuilt but not listed: %s", k, got[k])
				}
			}
			t.FailNow()
		}
		time.Sleep(250 * time.Millisecond)
	}
	caughtUp := time.Since(loadEnd).Round(time.Millisecond)

	// Per uid: resourceVersions never go down; each id once. One
	// exception after a SIGKILL (not clean), not of sharding's making: the
	// new owner finds gone an object whose last delivery the dead one had
	// not checkpointed yet, and its inferred (recovered) deletion carries
	// the checkpoint's version, which the stream already holds, below the
	// last one sent. An unsharded leader failover does the same (the
	// exporter's restore, not the shards); such deletions are counted and
	// logged, not failed.
	last := map[string]string{}
	sent := map[string]map[string]bool{} // uid -> versions in the stream
	byUID := map[string][]string{}       // uid -> its events, for the report
	var bad, stale []string
	ids := map[string]int{}
	gaps := 0
	for i, l := range lines {
		ev, _ := kfconsumer.Decode(l)
		if prev, dup := ids[ev.ID]; dup {
			t.Errorf("stream messages %d and %d have the same id %s", prev, i+1, ev.ID)
		}
		ids[ev.ID] = i + 1
		if ev.Type == kfconsumer.TypeGap {
			gaps++
			continue
		}
		var d struct {
			Prev      string `json:"previousResourceVersion"`
			Recovered bool   `json:"recovered"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		byUID[ev.UID] = append(byUID[ev.UID], fmt.Sprintf("message %d %s prev %q recovered %v time %s", i+1, ev.ID, d.Prev, d.Recovered, ev.Time.Format(time.StampMicro)))
		p, ok := last[ev.UID]
		switch {
		case !ok || !rvLess(ev.ResourceVersion, p):
			last[ev.UID] = ev.ResourceVersion
		case !clean && ev.Change() == kfconsumer.Deleted && d.Recovered && sent[ev.UID][ev.ResourceVersion]:
			stale = append(stale, ev.UID)
		case !slices.Contains(bad, ev.UID):
			bad = append(bad, ev.UID)
		}
		if sent[ev.UID] == nil {
			sent[ev.UID] = map[string]bool{}
		}
		sent[ev.UID][ev.ResourceVersion] = true
	}
	for _, uid := range bad {
		t.Errorf("uid %s: events not in resourceVersion order:\n  %s", uid, strings.Join(byUID[uid], "\n  "))
	}
	for _, uid := range stale {
		t.Logf("uid %s: inferred deletion with the checkpoint's version, below the last sent (the exporter's restore after a SIGKILL, not sharding):\n  %s", uid, strings.Join(byUID[uid], "\n  "))
	}
	stats := st.Stats()
	if clean && stats.Rebased != 0 {
		t.Errorf("%d patches start from a version the consumer does not hold; after clean handovers, want none", stats.Rebased)
	}
	verifyMatches(t, e.api.Kubeconfig, e.cfg, "js", len(w))
	t.Logf("%d writes; the stream holds %d events (%d gap markers, %d uids, %d stale inferred deletions), %d objects alive; consumer %+v; caught up %v after the load",
		ops, len(lines), gaps, len(last), len(stale), len(w), stats, caughtUp)
}

// normalJSON is v as JSON, numbers as listedOn's (float64) would print.
func normalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return mustJSON(m)
}

var filteredRE = regexp.MustCompile(`(?m)^kubefeed_shard_filtered_total\{[^}]*\} ([0-9.e+]+)$`)

// checkServerSide checks, from each replica's metrics, how the shards
// were filtered: gate on, kubefeed_shard_server_side is 1 and no object
// arrived outside a shard; gate off, it is 0 and objects of other shards
// arrived and were dropped.
func (e *shardEnv) checkServerSide(t *testing.T, rs ...*shardReplica) {
	t.Helper()
	for _, r := range rs {
		text := scrape(t, r.metrics)
		side := metricValue(t, text, "kubefeed_shard_server_side")
		filtered := 0.0
		for _, m := range filteredRE.FindAllStringSubmatch(text, -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			filtered += v
		}
		switch {
		case e.gate && (side != 1 || filtered != 0):
			t.Errorf("%s with the gate: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v; want 1 and 0", r.name, side, filtered)
		case !e.gate && (side != 0 || filtered == 0):
			t.Errorf("%s without the gate: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v; want 0 and more than 0", r.name, side, filtered)
		default:
			t.Logf("%s: kubefeed_shard_server_side %v, kubefeed_shard_filtered_total %v", r.name, side, filtered)
		}
	}
}

var (
	watchShardsRE   = regexp.MustCompile(`(?m)^apiserver_watch_shards_total\{group="",resource="configmaps"\} ([0-9.e+]+)$`)
	watchFilteredRE = regexp.MustCompile(`(?m)^apiserver_watch_filtered_events_total\{group="",resource="configmaps"\} ([0-9.e+]+)$`)
)

// checkAPIServerShards reads the API server's own account (gate on only):
// its watch cache dropped configmaps events of other shards before sending
// them (apiserver_watch_filtered_events_total), and sharded configmaps
// watches are open (apiserver_watch_shards_total). That gauge is only
// checked for being positive: the alpha feature decrements it on every
// call of a cache watcher's forget, which runs twice for a watch that
// ends, so after watches ended it counts fewer than are open (3 for 6
// after a kill and a handover).
func (e *shardEnv) checkAPIServerShards(t *testing.T) {
	t.Helper()
	if !e.gate {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := e.cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	value := func(re *regexp.Regexp) float64 {
		m := re.FindStringSubmatch(string(b))
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	watches, filtered := value(watchShardsRE), value(watchFilteredRE)
	if watches <= 0 || filtered <= 0 {
		t.Errorf("API server: apiserver_watch_shards_total{configmaps} %v, apiserver_watch_filtered_events_total{configmaps} %v; want both above 0", watches, filtered)
	} else {
		t.Logf("API server: apiserver_watch_shards_total{configmaps} %v, %v events filtered out by shard", watches, filtered)
	}
}

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	AuditID          string `json:"auditID"`
	Verb             string `json:"verb"`
	RequestURI       string `json:"requestURI"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
	} `json:"objectRef"`
}

// checkAudit reads the API server's audit log (gate on only): every list
// and watch of the watched ConfigMaps that a replica made carried a
// shardSelector, each one a shard's selector (or, for the one-item list
// that probes the gate, shard 0 of 2's), and each replica watched with the
// selector of every shard it held (held, by replica).
func (e *shardEnv) checkAudit(t *testing.T, held map[*shardReplica][]int) {
	t.Helper()
	if !e.gate {
		return
	}
	b, err := os.ReadFile(e.api.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	bySelector := map[string]int{}
	for i := range shards {
		bySelector[shard.Of(i, shards).Selector()] = i
	}
	probe := shard.Of(0, 2).Selector()
	type req struct{ verb, selector string }
	reqs := map[string]map[string]req{} // user -> auditID -> request
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev auditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit log line %q: %v", line, err)
		}
		if ev.ImpersonatedUser == nil || ev.ObjectRef == nil || ev.ObjectRef.Resource != "configmaps" || ev.ObjectRef.Namespace != e.ns ||
			(ev.Verb != "list" && ev.Verb != "watch") {
			continue
		}
		u, err := url.Parse(ev.RequestURI)
		if err != nil {
			t.Fatalf("audit requestURI %q: %v", ev.RequestURI, err)
		}
		user := ev.ImpersonatedUser.Username
		if reqs[user] == nil {
			reqs[user] = map[string]req{}
		}
		reqs[user][ev.AuditID] = req{verb: ev.Verb, selector: u.Query().Get("shardSelector")}
	}
	for r, shardsHeld := range held {
		user := "kubefeed-" + r.name
		watched := map[int]int{}
		lists, watches := 0, 0
		for _, q := range reqs[user] {
			i, ok := bySelector[q.selector]
			switch {
			case ok && q.verb == "watch":
				watches++
				watched[i]++
			case ok:
				lists++
			case q.verb == "list" && q.selector == probe:
			default:
				t.Errorf("%s made a %s of the configmaps of %s with shardSelector %q", user, q.verb, e.ns, q.selector)
			}
		}
		for _, i := range shardsHeld {
			if watched[i] == 0 {
				t.Errorf("%s held shard %d but never watched with its selector; its watches by shard: %v", user, i, watched)
			}
		}
		t.Logf("audit: %s made %d lists and %d watches of the scope, each with its shard's selector; watches by shard %v", user, lists, watches, watched)
	}
}

func union(sets ...[]int) []int {
	var out []int
	for _, s := range sets {
		for _, i := range s {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}
