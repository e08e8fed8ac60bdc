package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/sinks"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults applied by setDefaults.
const (
	defaultCluster         = "default"
	defaultWorkers         = 4
	defaultResyncPeriod    = 10 * time.Minute
	defaultShutdownTimeout = 30 * time.Second
	defaultLeaseName       = "kubefeed"
)

// SetDefaults fills in the documented defaults (Parse calls it).
func (c *Config) SetDefaults() {
	if c.Cluster == "" {
		c.Cluster = defaultCluster
	}
	if c.Workers == 0 {
		c.Workers = defaultWorkers
	}
	if c.ResyncPeriod.Duration == 0 {
		c.ResyncPeriod.Duration = defaultResyncPeriod
	}
	if c.ShutdownTimeout.Duration == 0 {
		c.ShutdownTimeout.Duration = defaultShutdownTimeout
	}
	if c.WatchTimeout.Duration == 0 {
		c.WatchTimeout.Duration = 5 * time.Minute
	}
	for i := range c.Watch {
		w := &c.Watch[i]
		if w.InitialList == "" {
			w.InitialList = InitialListSkip
		}
		if len(w.Events) == 0 {
			w.Events = []string{EventAdded, EventModified, EventDeleted}
		}
		if w.Expiry == "" && isEventsResource(w.Resource) {
			w.Expiry = ExpirySkip
		}
	}
	for i := range c.Sinks {
		c.Sinks[i].setDefaults()
	}
	if c.LeaderElection.Name == "" {
		c.LeaderElection.Name = defaultLeaseName
	}
	le := &c.LeaderElection
	if le.Standby == "" {
		le.Standby = StandbyWarm
	}
	for _, d := range []struct {
		p *Duration
		v time.Duration
	}{{&le.LeaseDuration, 15 * time.Second}, {&le.RenewDeadline, 10 * time.Second}, {&le.RetryPeriod, 2 * time.Second}} {
		if d.p.Duration == 0 {
			d.p.Duration = d.v
		}
	}
}

type validator struct {
	file     string
	loc      locator
	problems []Problem
}

// at records a problem at the value of path.
func (v *validator) at(path, format string, args ...any) {
	v.add(v.loc.find(path), path, format, args...)
}

// atKey records a problem at the key of path.
func (v *validator) atKey(path, format string, args ...any) {
	v.add(v.loc.keyOf(path), path, format, args...)
}

// block records the problems of a block at path, each at the position of
// its path inside the block.
func (v *validator) block(path string, ps []sinks.Problem) {
	for _, p := range ps {
		full := sinks.JoinPath(path, p.Path)
		if p.AtKey {
			v.atKey(full, "%s", p.Msg)
		} else {
			v.at(full, "%s", p.Msg)
		}
	}
}

func (v *validator) add(n *yaml.Node, path, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	v.problems = append(v.problems, Problem{File: v.file, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// atColumn records a problem at a position inside the scalar at path (an
// expression's line and column), accounting for quotes and block scalars.
func (v *validator) atColumn(path string, line, col int, format string, args ...any) {
	n := v.loc.find(path)
	if n == nil {
		v.at(path, format, args...)
		return
	}
	l, c := n.Line, n.Column
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		c++
	case yaml.LiteralStyle, yaml.FoldedStyle:
		l, c = n.Line+1, n.Column+2 // the block starts on the next line, indented
	}
	if line > 1 {
		l, c = l+line-1, 1
	}
	v.problems = append(v.problems, Problem{File: v.file, Line: l, Column: c + col - 1, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) config(c *Config) {
	if c.APIVersion != APIVersion {
		v.atKey("apiVersion", "must be %s, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		v.atKey("kind", "must be %s, got %q", Kind, c.Kind)
	}
	if errs := validation.IsDNS1123Label(c.Cluster); len(errs) > 0 {
		v.at("cluster", "must be a DNS label (lower case letters, digits, '-'): %s", strings.Join(errs, "; "))
	}
	if c.Workers < 0 || c.Workers > 256 {
		v.at("workers", "must be between 1 and 256, got %d", c.Workers)
	}
	sinkNames := map[string]bool{}
	if len(c.Sinks) == 0 {
		v.atKey("sinks", "at least one sink is needed")
	}
	for i := range c.Sinks {
		v.sink(fmt.Sprintf("sinks[%d]", i), &c.Sinks[i], sinkNames)
	}
	v.redactionKey(c.RedactionKeyFile)
	if len(c.Watch) == 0 {
		v.atKey("watch", "at least one watch rule is needed")
	}
	for i := range c.Watch {
		v.watch(fmt.Sprintf("watch[%d]", i), &c.Watch[i], sinkNames, c.RedactionKeyFile)
	}
	if cp := c.Checkpoint; cp != nil {
		switch {
		case cp.File != nil && cp.JetStream != nil:
			v.at("checkpoint", "set one of file or jetstream, not both")
		case cp.File != nil && cp.File.Path == "":
			v.at("checkpoint.file", "path is required")
		case cp.JetStream != nil:
			v.block("checkpoint.jetstream", cp.JetStream.NATSConnection.Validate())
			if cp.JetStream.Bucket == "" || strings.ContainsAny(cp.JetStream.Bucket, ". *>") {
				v.atKey("checkpoint.jetstream", "bucket must be a bucket name without '.', ' ', '*' or '>' (got %q)", cp.JetStream.Bucket)
			}
			if r := cp.JetStream.Replicas; r < 0 || r > 5 {
				v.at("checkpoint.jetstream.replicas", "must be between 1 and 5, got %d", r)
			}
		case cp.File == nil && cp.JetStream == nil:
			v.at("checkpoint", "set one of file or jetstream")
		}
	}
	if le := c.LeaderElection; le.Enabled {
		if le.Namespace == "" {
			v.at("leaderElection", "namespace is required when leader election is enabled")
		}
		if c.Checkpoint == nil || c.Checkpoint.JetStream == nil {
			v.at("leaderElection.enabled", "replicas must share their checkpoint: set checkpoint.jetstream (a file checkpoint cannot be shared)")
		}
		if le.RenewDeadline.Duration >= le.LeaseDuration.Duration || le.RetryPeriod.Duration >= le.RenewDeadline.Duration {
			v.at("leaderElection", "need retryPeriod < renewDeadline < leaseDuration")
		}
		if le.Standby != StandbyWarm && le.Standby != StandbyCold {
			v.at("leaderElection.standby", "must be %q or %q, got %q", StandbyWarm, StandbyCold, le.Standby)
		}
	}
	if sh := c.Sharding; sh != nil {
		if sh.Shards < 1 || sh.Shards > MaxShards {
			v.at("sharding.shards", "must be between 1 and %d, got %d", MaxShards, sh.Shards)
		}
		if !c.LeaderElection.Enabled {
			v.at("sharding", "needs leaderElection.enabled: each shard has its own Lease")
		}
		if c.Checkpoint == nil || c.Checkpoint.JetStream == nil {
			v.at("sharding", "needs checkpoint.jetstream: a shard's checkpoint moves with it between replicas")
		}
	}
	if sn := c.Snapshots; sn != nil {
		if sn.Namespace == "" {
			v.atKey("snapshots", "namespace is required: the namespace of the snapshot requests (ConfigMaps)")
		} else if errs := validation.IsDNS1123Label(sn.Namespace); len(errs) > 0 {
			v.at("snapshots.namespace", "bad namespace %q: %s", sn.Namespace, strings.Join(errs, "; "))
		}
		if c.Sharding != nil {
			v.at("snapshots", "not supported together with sharding yet: a snapshot would have to span every shard's replica")
		}
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			v.at("metrics.address", "must be host:port or :port: %v", err)
		}
	}
}

func (v *validator) watch(path string, w *Watch, sinkNames map[string]bool, redactionKeyFile string) {
	if strings.TrimSpace(w.Resource) == "" {
		v.atKey(path, "resource is required (for example pods, deployments.apps, widgets.example.com)")
	}
	if len(w.Namespaces) > 0 && w.NamespaceSelector != "" {
		v.at(path+".namespaceSelector", "set namespaces or namespaceSelector, not both")
	}
	for j, ns := range w.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			v.at(fmt.Sprintf("%s.namespaces[%d]", path, j), "bad namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	for j, ns := range w.ExcludeNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			v.at(fmt.Sprintf("%s.excludeNamespaces[%d]", path, j), "bad namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	if w.NamespaceSelector != "" {
		if _, err := labels.Parse(w.NamespaceSelector); err != nil {
			v.at(path+".namespaceSelector", "bad label selector: %v", err)
		}
	}
	if _, err := labels.Parse(w.LabelSelector); err != nil {
		v.at(path+".labelSelector", "bad label selector: %v", err)
	}
	if _, err := fields.ParseSelector(w.FieldSelector); err != nil {
		v.at(path+".fieldSelector", "bad field selector: %v", err)
	}
	seen := map[string]bool{}
	for j, e := range w.Events {
		switch e {
		case EventAdded, EventModified, EventDeleted:
		default:
			v.at(fmt.Sprintf("%s.events[%d]", path, j), "unknown event %q: use ADDED, MODIFIED or DELETED", e)
		}
		if seen[e] {
			v.at(fmt.Sprintf("%s.events[%d]", path, j), "event %q listed twice", e)
		}
		seen[e] = true
	}
	if w.InitialList != InitialListSkip && w.InitialList != InitialListEmit {
		v.at(path+".initialList", "must be skip or emit, got %q", w.InitialList)
	}
	for j, p := range w.IgnorePaths {
		if _, err := filters.ParsePattern(p); err != nil {
			v.at(fmt.Sprintf("%s.ignorePaths[%d]", path, j), "%v", err)
		}
	}
	for j, p := range w.RedactPaths {
		if _, err := filters.ParsePattern(p); err != nil {
			v.at(fmt.Sprintf("%s.redactPaths[%d]", path, j), "%v", err)
		}
	}
	if w.Filter != "" {
		if _, err := filters.CompileExpr(w.Filter); err != nil {
			var xe *filters.ExprError
			if errors.As(err, &xe) {
				v.atColumn(path+".filter", xe.Line, xe.Column, "bad expression: %s", xe.Msg)
			} else {
				v.at(path+".filter", "bad expression: %v", err)
			}
		}
	}
	switch w.Redact {
	case "", "none":
	case "hash":
		if redactionKeyFile == "" {
			v.at(path+".redact", "redact: hash needs redactionKeyFile at the top level")
		}
	default:
		v.at(path+".redact", "must be none or hash (default: a marker), got %q", w.Redact)
	}
	if w.Attribution != "" && w.Attribution != AttributionManagers {
		v.at(path+".attribution", "must be %s (or unset), got %q", AttributionManagers, w.Attribution)
	}
	v.eventsOptions(path, w)
	for j, s := range w.Sinks {
		if !sinkNames[s] {
			v.at(fmt.Sprintf("%s.sinks[%d]", path, j), "no sink named %q", s)
		}
	}
}
