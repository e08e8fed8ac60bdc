package app

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/filters"
)

func testScope(t *testing.T, w config.Watch, redact filters.Patterns) *verifyScope {
	t.Helper()
	ign, err := filters.ParsePatterns(w.IgnorePaths)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := labels.Parse(w.LabelSelector)
	if err != nil {
		t.Fatal(err)
	}
	s := &verifyScope{
		w: w, namespace: "shop", label: sel, excluded: map[string]bool{}, skipsFirst: w.InitialList != config.InitialListEmit,
		res:    resource.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Namespaced: true},
		ignore: append(append(filters.Patterns{}, filters.DefaultIgnore...), ign...),
	}
	if len(redact) > 0 {
		s.redact = filters.NewRedactor(redact, nil)
	}
	return s
}

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompareOne(t *testing.T) {
	k := consumer.Key{Resource: "configmaps", Namespace: "shop", Name: "web"}
	const base = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web","labels":{"app":"web"}},"data":{"n":"1"}}`
	for _, tc := range []struct {
		name       string
		watch      config.Watch
		redact     filters.Patterns
		feed, live string // objects; "" for absent
		feedUID    string
		feedRV     string
		liveRV     string
		want       string // problem, "" for a match
		paths      string
	}{
		{name: "same version", feed: base, live: base, feedRV: "5", liveRV: "5"},
		{name: "same version, other content (the version decides)", feed: base, live: `{"data":{"n":"2"}}`, feedRV: "5", liveRV: "5"},
		{name: "missing from the feed", live: base, liveRV: "5", want: diffMissing},
		{name: "gone from the cluster", feed: base, feedRV: "5", want: diffExtra},
		{name: "another incarnation", feed: base, live: base, feedUID: "old", feedRV: "5", liveRV: "9", want: diffUID},
		{name: "another version", feed: base, live: strings.Replace(base, `"n":"1"`, `"n":"2","m":{"x":[1,{"y":null}]}`, 1), feedRV: "5", liveRV: "9", want: diffVersion, paths: "/data/m/x/0,/data/m/x/1/y,/data/n"},
		{name: "big integers compare by every digit", feed: strings.Replace(base, `"n":"1"`, `"n":9007199254740993`, 1), live: strings.Replace(base, `"n":"1"`, `"n":9007199254740992`, 1), feedRV: "5", liveRV: "9", want: diffVersion, paths: "/data/n"},
		{name: "only a heartbeat changed", feed: base, live: strings.Replace(base, `"data"`, `"status":{"conditions":[{"lastHeartbeatTime":"t"}]},"data"`, 1), feedRV: "5", liveRV: "9"},
		{name: "only ignored paths, a whole map added", watch: config.Watch{IgnorePaths: []string{"/metadata/annotations"}}, feed: base, live: strings.Replace(base, `"labels"`, `"annotations":{"a/b":"x","c~d":"y"},"labels"`, 1), feedRV: "5", liveRV: "9"},
		{name: "generation alone", feed: base, live: strings.Replace(base, `"name":"web"`, `"name":"web","generation":2`, 1), feedRV: "5", liveRV: "9"},
		{name: "status alone with ignoreStatusOnly", watch: config.Watch{IgnoreStatusOnly: true}, feed: base, live: strings.Replace(base, `"data"`, `"status":{"ready":true},"data"`, 1), feedRV: "5", liveRV: "9"},
		{name: "status alone without it", feed: base, live: strings.Replace(base, `"data"`, `"status":{"ready":true},"data"`, 1), feedRV: "5", liveRV: "9", want: diffVersion, paths: "/status/ready"},
		{name: "redacted values match the live object redacted", redact: filters.SecretPaths, feed: strings.Replace(base, `{"n":"1"}`, `{"n":"<redacted>"}`, 1), live: strings.Replace(base, `"n":"1"`, `"n":"secret"`, 1), feedRV: "5", liveRV: "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testScope(t, tc.watch, tc.redact)
			var fe *consumer.Entry
			if tc.feed != "" {
				uid := tc.feedUID
				if uid == "" {
					uid = "u1"
				}
				fe = &consumer.Entry{Key: k, Object: obj(t, tc.feed), UID: uid, ResourceVersion: tc.feedRV, EventID: uid + "." + tc.feedRV + ".added"}
			}
			var lo *liveObject
			if tc.live != "" {
				lo = &liveObject{obj: obj(t, tc.live), uid: "u1", rv: tc.liveRV, scope: s}
			}
			d := compareOne(k, fe, lo)
			switch {
			case tc.want == "" && d != nil:
				t.Fatalf("differs: %+v", d)
			case tc.want != "" && d == nil:
				t.Fatalf("matches, want %s", tc.want)
			case d != nil:
				if d.Problem != tc.want || strings.Join(d.Paths, ",") != tc.paths {
					t.Errorf("problem %s at %v, want %s at %s", d.Problem, d.Paths, tc.want, tc.paths)
				}
				if d.Object != "configmaps/shop/web" {
					t.Errorf("object %q", d.Object)
				}
			}
		})
	}
}

func TestCompareAllSetsAsidePredatingObjects(t *testing.T) {
	first := time.Date(2026, 1, 1, 12, 0, 0, 500_000_000, time.UTC)
	skip := testScope(t, config.Watch{}, nil)
	emit := testScope(t, config.Watch{InitialList: config.InitialListEmit}, nil)
	k := func(name string) consumer.Key {
		return consumer.Key{Resource: "configmaps", Namespace: "shop", Name: name}
	}
	live := func(s *verifyScope, created time.Time) *liveObject {
		return &liveObject{obj: map[string]any{}, uid: "u", rv: "1", created: created, scope: s}
	}
	for _, tc := range []struct {
		name  string
		lo    *liveObject
		rr    consumer.ReadResult
		extra bool // predating, not a difference
	}{
		{"skip: created a second before the feed", live(skip, first.Add(-time.Second)), consumer.ReadResult{Messages: 1, FirstTime: first, StreamFirstSeq: 1}, true},
		{"skip: created in the feed's first second", live(skip, first.Truncate(time.Second)), consumer.ReadResult{Messages: 1, FirstTime: first, StreamFirstSeq: 1}, false},
		{"skip: created after the feed began", live(skip, first.Add(time.Minute)), consumer.ReadResult{Messages: 1, FirstTime: first, StreamFirstSeq: 1}, false},
		{"skip: an empty feed", live(skip, first), consumer.ReadResult{}, true},
		{"emit: created before the feed", live(emit, first.Add(-time.Hour)), consumer.ReadResult{Messages: 1, FirstTime: first, StreamFirstSeq: 1}, false},
		{"emit: the stream dropped old messages", live(emit, first.Add(-time.Hour)), consumer.ReadResult{Messages: 1, FirstTime: first, StreamFirstSeq: 40}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diffs, predating, compared := compareAll(consumer.New(consumer.Options{}), map[consumer.Key]*liveObject{k("x"): tc.lo}, []*verifyScope{tc.lo.scope}, tc.rr)
			if tc.extra && (len(diffs) != 0 || len(predating) != 1 || compared != 0) {
				t.Errorf("want it set aside; diffs %v, predating %v, compared %d", diffs, predating, compared)
			}
			if !tc.extra && (len(diffs) != 1 || diffs[0].Problem != diffMissing || len(predating) != 0 || compared != 1) {
				t.Errorf("want it missing; diffs %v, predating %v, compared %d", diffs, predating, compared)
			}
		})
	}
}

func TestCompareAllKeepsToTheScopes(t *testing.T) {
	s := testScope(t, config.Watch{LabelSelector: "app=web"}, nil)
	st := consumer.New(consumer.Options{})
	for _, ev := range []string{
		// In scope, and the same in the cluster.
		`{"id":"u1.5.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"in","uid":"u1","resourceversion":"5","data":{"object":{"metadata":{"labels":{"app":"web"}}}}}`,
		// Another namespace, another label, another resource: not this config's.
		`{"id":"u2.5.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"other","name":"x","uid":"u2","resourceversion":"5","data":{"object":{"metadata":{"labels":{"app":"web"}}}}}`,
		`{"id":"u3.5.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"y","uid":"u3","resourceversion":"5","data":{"object":{"metadata":{"labels":{"app":"db"}}}}}`,
		`{"id":"u4.5.added","type":"io.kubefeed.resource.added","apiversion":"apps/v1","resource":"configmaps","namespace":"shop","name":"z","uid":"u4","resourceversion":"5","data":{"object":{"metadata":{"labels":{"app":"web"}}}}}`,
	} {
		e, err := consumer.Decode([]byte(ev))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	k := consumer.Key{Resource: "configmaps", Namespace: "shop", Name: "in"}
	live := map[consumer.Key]*liveObject{k: {obj: map[string]any{}, uid: "u1", rv: "5", scope: s}}
	diffs, _, compared := compareAll(st, live, []*verifyScope{s}, consumer.ReadResult{Messages: 4, StreamFirstSeq: 1})
	if len(diffs) != 0 || compared != 1 {
		t.Errorf("diffs %+v, compared %d; want only the object in scope, matching", diffs, compared)
	}
}

func TestVerifiedSinkOf(t *testing.T) {
	cfg := &config.Config{Sinks: []config.Sink{{Name: "hook", Webhook: &config.WebhookSink{}}, {Name: "js", JetStream: &config.JetStreamSink{Stream: "S"}}, {Name: "bus", Kafka: &config.KafkaSink{Topic: "T"}}}}
	if s, err := verifiedSinkOf(cfg, "js"); err != nil || s.JetStream == nil || s.JetStream.Stream != "S" {
		t.Errorf("js: %v", err)
	}
	if s, err := verifiedSinkOf(cfg, "bus"); err != nil || s.Kafka == nil || s.Kafka.Topic != "T" {
		t.Errorf("bus: %v", err)
	}
	if _, err := verifiedSinkOf(cfg, "hook"); err == nil || !strings.Contains(err.Error(), `sink "hook" is a webhook sink: verify reads what a jetstream sink stored in its stream or a kafka sink in its topics`) {
		t.Errorf("hook: %v", err)
	}
	if _, err := verifiedSinkOf(cfg, "x"); err == nil || !strings.Contains(err.Error(), `no sink named "x" in the config (its sinks: hook, js, bus)`) {
		t.Errorf("x: %v", err)
	}
}

func TestPrintReport(t *testing.T) {
	k := func(n string) consumer.Key { return consumer.Key{Resource: "configmaps", Namespace: "shop", Name: n} }
	r := &verifyReport{
		Stream: "KUBEFEED", Compared: 4,
		Differences: []*difference{
			{Object: "configmaps/shop/a", Key: k("a"), Problem: diffMissing, Cluster: &side{UID: "u1", ResourceVersion: "7"}},
			{Object: "configmaps/shop/b", Key: k("b"), Problem: diffExtra, Feed: &side{UID: "u2", ResourceVersion: "3", EventID: "u2.3.added"}},
			{Object: "configmaps/shop/c", Key: k("c"), Problem: diffVersion, Feed: &side{ResourceVersion: "4"}, Cluster: &side{ResourceVersion: "9"}, Paths: []string{"/data/x", "/data/a~1b"}},
			{Object: "configmaps/shop/d", Key: k("d"), Problem: diffUID, Feed: &side{UID: "old", ResourceVersion: "1"}, Cluster: &side{UID: "new", ResourceVersion: "2"}},
		},
		NotCompared: []notCompared{{Rule: 2, Resource: "pods", Reason: "it has a filter"}},
		Gaps:        []consumer.Gap{{Reason: "restart"}, {Reason: "relist"}, {Reason: "restart"}},
		Read:        &consumer.ReadResult{Messages: 40, LastSeq: 42},
	}
	for i := 0; i < 12; i++ {
		r.Predating = append(r.Predating, fmt.Sprintf("configmaps/shop/old%02d", i))
	}
	var b strings.Builder
	if err := printReport(&b, "text", r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"MISSING  configmaps/shop/a  not in the feed; the cluster has it at resourceVersion 7 (uid u1)\n",
		"EXTRA    configmaps/shop/b  in the feed at resourceVersion 3 (event u2.3.added), gone from the cluster\n",
		"VERSION  configmaps/shop/c  the feed has resourceVersion 4, the cluster 9; they differ at /data/x, /data/a~1b\n",
		"UID      configmaps/shop/d  the feed has uid old (resourceVersion 1), the cluster uid new (resourceVersion 2)\n",
		"note: watch[2] (pods) not compared: it has a filter\n",
		"note: 12 objects are older than the feed",
		"configmaps/shop/old09 and 2 more (-o json lists them all)\n",
		"gap markers in the feed: relist 1, restart 2\n",
		"4 objects differ (4 objects compared; stream KUBEFEED, 40 messages read up to sequence 42)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	r.Differences, r.Match = nil, true
	if err := printReport(&b, "json", r); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatal(err)
	}
	if d, ok := back["differences"].([]any); !ok || len(d) != 0 || back["match"] != true || len(back["predatingFeed"].([]any)) != 12 {
		t.Errorf("json: %s", b.String())
	}
}

// TestVerifyReportsEveryIncarnationTheClusterLacks: every incarnation (uid)
// the feed holds and the cluster does not is EXTRA, also when another uid
// holds its name now (issue 21: a deletion lost while kubefeed was down
// without a checkpoint, the name re-created). A correct stream of a uid
// change (the old one's deletion first, or, after a restart, the old one's
// recovered deletion after the new one's added) still matches. The
// comparison runs as verify runs it: LIST, compare, GET again, compare.
func TestVerifyReportsEveryIncarnationTheClusterLacks(t *testing.T) {
	const (
		oldTS = "2026-01-01T10:00:00Z"
		newTS = "2026-01-01T11:00:00Z"
	)
	// ev is one event of configmap shop/x; created "" leaves out
	// creationTimestamp.
	ev := func(change, uid, rv, created string, recovered bool) string {
		ts := ""
		if created != "" {
			ts = `,"creationTimestamp":"` + created + `"`
		}
		prev := ""
		if change == "modified" {
			prev = `"previousResourceVersion":"1",`
		}
		return fmt.Sprintf(`{"id":"%[2]s.%[3]s.%[1]s","type":"io.kubefeed.resource.%[1]s","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"x","uid":"%[2]s","resourceversion":"%[3]s",`+
			`"data":{%[6]s"recovered":%[5]t,"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"shop","uid":"%[2]s","resourceVersion":"%[3]s"%[4]s},"data":{"k":"v"}}}}`,
			change, uid, rv, ts, recovered, prev)
	}
	gap := `{"id":"gap.1","type":"io.kubefeed.gap","cluster":"test","data":{"scope":"configmaps -n shop","reason":"restart"}}`
	live := func(uid, rv, created string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"k": "v"}}}
		u.SetName("x")
		u.SetNamespace("shop")
		u.SetUID(types.UID(uid))
		u.SetResourceVersion(rv)
		ts, _ := time.Parse(time.RFC3339, created)
		u.SetCreationTimestamp(metav1.NewTime(ts))
		return u
	}
	for _, tc := range []struct {
		name     string
		feed     []string
		cluster  *unstructured.Unstructured // shop/x; nil: none
		want     []string                   // problem feed-uid@rv cluster-uid@rv, in report order
		compared int
		text     string // a line the text report must hold
	}{
		{
			name:    "a lost deletion: the name re-created, then modified (issue 21)",
			feed:    []string{ev("added", "u1", "5", oldTS, false), ev("modified", "u2", "9", newTS, false)},
			cluster: live("u2", "9", newTS), want: []string{"extra u1@5 u2@9"}, compared: 2,
			text: "EXTRA    configmaps/shop/x  in the feed as uid u1 at resourceVersion 5 (event u1.5.added), never deleted; the cluster holds this name as uid u2 (resourceVersion 9)\n",
		},
		{
			name:    "a lost deletion: the re-created one added, after a gap marker",
			feed:    []string{ev("added", "u1", "5", oldTS, false), gap, ev("added", "u2", "9", newTS, true)},
			cluster: live("u2", "9", newTS), want: []string{"extra u1@5 u2@9"}, compared: 2,
		},
		{
			name:    "a lost deletion: the one held current is stale, the cluster's is shadowed (no creation timestamps)",
			feed:    []string{ev("added", "u2", "9", "", false), ev("added", "u1", "5", "", false)},
			cluster: live("u2", "9", newTS), want: []string{"extra u1@5 u2@9"}, compared: 2,
		},
		{
			name:    "both incarnations gone from the cluster",
			feed:    []string{ev("added", "u1", "5", oldTS, false), ev("added", "u2", "9", newTS, false)},
			cluster: nil, want: []string{"extra u1@5 -", "extra u2@9 -"}, compared: 2,
			text: "EXTRA    configmaps/shop/x  in the feed at resourceVersion 5 (event u1.5.added), gone from the cluster\n",
		},
		{
			name:    "a third incarnation in the cluster",
			feed:    []string{ev("added", "u1", "5", oldTS, false), ev("added", "u2", "9", newTS, false)},
			cluster: live("u3", "12", newTS), want: []string{"extra u1@5 u3@12", "uid u2@9 u3@12"}, compared: 3,
		},
		{
			name:    "kubefeed's uid change: the old one's deletion, then the new one's added",
			feed:    []string{ev("added", "u1", "5", oldTS, false), ev("deleted", "u1", "5", oldTS, false), ev("added", "u2", "9", newTS, false)},
			cluster: live("u2", "9", newTS), compared: 1,
		},
		{
			name: "after a restart: the new one's added, then the old one's recovered deletion",
			feed: []string{
				ev("added", "u1", "5", oldTS, false), gap,
				ev("added", "u2", "9", newTS, true), ev("deleted", "u1", "5", oldTS, true),
			},
			cluster: live("u2", "9", newTS), compared: 1,
		},
		{
			name:    "the new one deleted too, and both deletions in the feed",
			feed:    []string{ev("added", "u1", "5", oldTS, false), ev("added", "u2", "9", newTS, false), ev("deleted", "u2", "9", newTS, false), ev("deleted", "u1", "5", oldTS, true)},
			cluster: nil, compared: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testScope(t, config.Watch{InitialList: config.InitialListEmit}, nil)
			st := consumer.New(consumer.Options{})
			for _, raw := range tc.feed {
				e, err := consumer.Decode([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			var objs []runtime.Object
			if tc.cluster != nil {
				objs = append(objs, tc.cluster)
			}
			gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
			dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "ConfigMapList"}, objs...)
			ctx := context.Background()
			scopes := []*verifyScope{s}
			lv, err := listScopes(ctx, dyn, scopes)
			if err != nil {
				t.Fatal(err)
			}
			rr := consumer.ReadResult{Messages: len(tc.feed), StreamFirstSeq: 1}
			diffs, _, compared := compareAll(st, lv, scopes, rr)
			if compared != tc.compared {
				t.Errorf("compared %d, want %d", compared, tc.compared)
			}
			// The re-check (GET again) keeps what still differs.
			diffs, err = recheck(ctx, dyn, st, scopes, diffs, rr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range diffs {
				f, c := "-", "-"
				if d.Feed != nil {
					f = d.Feed.UID + "@" + d.Feed.ResourceVersion
				}
				if d.Cluster != nil {
					c = d.Cluster.UID + "@" + d.Cluster.ResourceVersion
				}
				if d.Object != "configmaps/shop/x" {
					t.Errorf("object %q", d.Object)
				}
				got = append(got, d.Problem+" "+f+" "+c)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("differences %q, want %q", got, tc.want)
			}
			if tc.text != "" {
				var b strings.Builder
				if err := printReport(&b, "text", &verifyReport{Differences: diffs, Compared: compared}); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(b.String(), tc.text) {
					t.Errorf("text report lacks %q:\n%s", tc.text, b.String())
				}
			}
		})
	}
}

// TestTruncatedEntryUnderLabelSelectorIsInTheFeed: an object too large for
// the sink reaches the feed as its identity only (data.truncated: object;
// the identity has no labels). Under a rule with a labelSelector, verify
// still sees that the feed holds it (same uid, same resourceVersion): it
// is not "missing from the feed".
func TestTruncatedEntryUnderLabelSelectorIsInTheFeed(t *testing.T) {
	s := testScope(t, config.Watch{LabelSelector: "app=web", InitialList: config.InitialListEmit}, nil)
	st := consumer.New(consumer.Options{})
	// What sinks.Truncate(e, TruncatedObject) leaves of a labelled object.
	ev := `{"id":"u1.5.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"big","uid":"u1","resourceversion":"5",` +
		`"data":{"truncated":"object","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big","namespace":"shop","uid":"u1","resourceVersion":"5"}}}}`
	e, err := consumer.Decode([]byte(ev))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(e); err != nil {
		t.Fatal(err)
	}
	k := consumer.Key{Resource: "configmaps", Namespace: "shop", Name: "big"}
	live := map[consumer.Key]*liveObject{k: {obj: map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}}}, uid: "u1", rv: "5", scope: s}}
	diffs, _, _ := compareAll(st, live, []*verifyScope{s}, consumer.ReadResult{Messages: 1, StreamFirstSeq: 1})
	for _, d := range diffs {
		t.Errorf("%s: %s (feed %+v, cluster %+v); the feed holds it at the cluster's version", d.Object, d.Problem, d.Feed, d.Cluster)
	}
}
