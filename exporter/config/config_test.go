package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

const good = `apiVersion: kubefeed.io/v1alpha1
kind: Config
cluster: prod-eu-1
watch:
  - resource: deployments.apps
    namespaces: [shop, web]
    excludeNamespaces: [kube-system]
    labelSelector: app=web
    fieldSelector: metadata.name!=x
    events: [ADDED, MODIFIED, DELETED]
    ignorePaths: [/status/conditions/*/lastHeartbeatTime]
    initialList: emit
    sinks: [audit]
  - resource: pods
sinks:
  - name: audit
    file: { path: /tmp/x.jsonl }
  - name: console
    stdout: {}
leaderElection: { enabled: false, namespace: kubefeed, name: kubefeed }
metrics: { address: ":9090" }
`

func TestParseGoodConfigWithDefaults(t *testing.T) {
	c, err := config.Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "prod-eu-1" || c.Workers != config.DefaultWorkers || c.ResyncPeriod.Duration != config.DefaultResyncPeriod {
		t.Errorf("cluster/workers/resync = %q/%d/%v", c.Cluster, c.Workers, c.ResyncPeriod)
	}
	if w := c.Watch[1]; w.InitialList != "skip" || len(w.Events) != 3 {
		t.Errorf("defaults of watch[1]: initialList %q events %v", w.InitialList, w.Events)
	}
	if c.Sinks[1].Stdout.Format != "json" {
		t.Errorf("stdout format default = %q", c.Sinks[1].Stdout.Format)
	}
}

func TestParseBadConfigs(t *testing.T) {
	base := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\n"
	sinks := "sinks:\n  - name: out\n    stdout: {}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings, one per expected problem
	}{
		{"unknown top key", base + "wach: []\n" + sinks, []string{`f.yaml:3:1: unknown key "wach"`}},
		{"unknown nested key", base + "watch:\n  - resource: pods\n    labelSelectr: a=b\n" + sinks, []string{`f.yaml:5:5: unknown key "labelSelectr"`}},
		{"bad label selector", base + "watch:\n  - resource: pods\n    labelSelector: 'a=(b'\n" + sinks, []string{`f.yaml:5:20: watch[0].labelSelector: bad label selector`}},
		{"bad field selector", base + "watch:\n  - resource: pods\n    fieldSelector: 'a'\n" + sinks, []string{`f.yaml:5:20: watch[0].fieldSelector: bad field selector`}},
		{"duplicate sink", base + "watch:\n  - resource: pods\n" + sinks + "  - name: out\n    stdout: {}\n", []string{`f.yaml:8:11: sinks[1].name: duplicate sink name "out"`}},
		{"unknown sink reference", base + "watch:\n  - resource: pods\n    sinks: [nope]\n" + sinks, []string{`f.yaml:5:13: watch[0].sinks[0]: no sink named "nope"`}},
		{"wrong type", base + "workers: many\nwatch:\n  - resource: pods\n" + sinks, []string{`f.yaml:3:10: wrong type`}},
		{"bad attribution", base + "watch:\n  - resource: pods\n    attribution: users\n" + sinks,
			[]string{`f.yaml:5:18: watch[0].attribution: must be managers (or unset), got "users"`}},
		{"bad event and initialList", base + "watch:\n  - resource: pods\n    events: [ADDED, CHANGED]\n    initialList: all\n" + sinks,
			[]string{`watch[0].events[1]: unknown event "CHANGED"`, `f.yaml:6:18: watch[0].initialList: must be skip or emit`}},
		{"no resource, no sink kind", base + "watch:\n  - namespaces: [a]\nsinks:\n  - name: x\n", []string{`watch[0]: resource is required`, `sinks[0]: set exactly one sink kind`}},
		{"wrong apiVersion", "apiVersion: v1\nkind: Config\nwatch:\n  - resource: pods\n" + sinks, []string{`f.yaml:1:1: apiVersion: must be kubefeed.io/v1alpha1`}},
		{"syntax error", base + "watch: [\n", []string{`f.yaml:`}},
		{"bad duration", base + "resyncPeriod: soon\nwatch:\n  - resource: pods\n" + sinks, []string{`bad duration "soon"`}},
		{"empty", "", []string{"empty config"}},
		{"leader election needs a shared checkpoint", base + "watch:\n  - resource: pods\n" + sinks + "checkpoint:\n  file: {path: /x}\nleaderElection: {enabled: true, namespace: kf}\n",
			[]string{"leaderElection.enabled: replicas must share their checkpoint"}},
		{"unknown standby mode", base + "watch:\n  - resource: pods\n" + sinks + "checkpoint:\n  jetstream: {servers: [nats://n:4222], bucket: b}\nleaderElection: {enabled: true, namespace: kf, standby: hot}\n",
			[]string{`leaderElection.standby: must be "warm" or "cold", got "hot"`}},
		{"sharding without leader election or a shared checkpoint", base + "watch:\n  - resource: pods\n" + sinks + "sharding: {shards: 0}\n",
			[]string{"sharding.shards: must be between 1 and 64, got 0", "sharding: needs leaderElection.enabled", "sharding: needs checkpoint.jetstream"}},
		{"snapshots without a namespace", base + "watch:\n  - resource: pods\n" + sinks + "snapshots: {}\n",
			[]string{"snapshots: namespace is required"}},
		{"snapshots in a bad namespace, with sharding", base + "watch:\n  - resource: pods\n" + sinks + "snapshots: {namespace: Bad_NS}\nsharding: {shards: 2}\n",
			[]string{"sharding: needs leaderElection.enabled", "sharding: needs checkpoint.jetstream", `f.yaml:8:24: snapshots.namespace: bad namespace "Bad_NS"`, "f.yaml:8:12: snapshots: not supported together with sharding"}},
		{"checkpoint bucket replicas", base + "watch:\n  - resource: pods\n" + sinks + "checkpoint:\n  jetstream: {servers: [nats://n:4222], bucket: b, replicas: 7}\n",
			[]string{"f.yaml:9:62: checkpoint.jetstream.replicas: must be between 1 and 5, got 7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(tc.yaml))
			wantProblems(t, err, tc.want)
		})
	}
}

// wantProblems checks that err, a Parse error, has exactly len(want)
// problems and mentions each of want.
func wantProblems(t *testing.T, err error, want []string) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error = %v, want *config.Error", err)
	}
	if len(ce.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}
