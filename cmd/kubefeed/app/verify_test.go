package app

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/consumer"
	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
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
		res:    exporter.Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Namespaced: true},
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

func TestJetStreamSinkOf(t *testing.T) {
	cfg := &config.Config{Sinks: []config.Sink{{Name: "hook", Webhook: &config.WebhookSink{}}, {Name: "js", JetStream: &config.JetStreamSink{Stream: "S"}}}}
	if s, err := jetStreamSinkOf(cfg, "js"); err != nil || s.Stream != "S" {
		t.Errorf("js: %v", err)
	}
	if _, err := jetStreamSinkOf(cfg, "hook"); err == nil || !strings.Contains(err.Error(), `sink "hook" is a webhook sink`) {
		t.Errorf("hook: %v", err)
	}
	if _, err := jetStreamSinkOf(cfg, "x"); err == nil || !strings.Contains(err.Error(), `no sink named "x" in the config (its sinks: hook, js)`) {
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
		Read:        consumer.ReadResult{Messages: 40, LastSeq: 42},
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
