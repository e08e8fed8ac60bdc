package plan

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// Rule is one compiled watch entry of the config.
type Rule struct {
	Index       int
	Config      config.Watch
	admit       filters.Predicate // event types, then the CEL filter
	ignore      filters.Patterns
	redactPaths filters.Patterns // from redactPaths
	redactKey   []byte           // nil: marker
	EmitInitial bool
	labels      labels.Selector // the rule's label selector (deletions of unknown rule)
	Sinks       []string        // names; all sinks when the config lists none
	Enrich      Enricher        // enrich: involvedObject; nil otherwise

	// A rule names one resource, so its redactor is built once.
	redactOnce sync.Once
	redact     *filters.Redactor
}

// Enricher finds the metadata of the object a Kubernetes Event is about
// (nil: unknown).
type Enricher interface {
	Lookup(obj map[string]any) *event.InvolvedObject
}

func CompileRules(cfg *config.Config) ([]*Rule, error) {
	all := make([]string, 0, len(cfg.Sinks))
	for _, s := range cfg.Sinks {
		all = append(all, s.Name)
	}
	var key []byte
	if cfg.RedactionKeyFile != "" {
		b, err := os.ReadFile(cfg.RedactionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("redactionKeyFile: %w", err)
		}
		key = []byte(strings.TrimSpace(string(b)))
	}
	rules := make([]*Rule, 0, len(cfg.Watch))
	for i, w := range cfg.Watch {
		r := &Rule{Index: i, Config: w, EmitInitial: w.InitialList == config.InitialListEmit, Sinks: w.Sinks}
		if len(r.Sinks) == 0 {
			r.Sinks = all
		}
		types := filters.EventTypes{}
		for _, e := range w.Events {
			types[e] = true
		}
		r.admit = types
		if w.Filter != "" {
			x, err := filters.CompileExpr(w.Filter)
			if err != nil {
				return nil, fmt.Errorf("watch[%d].filter: %w", i, err)
			}
			r.admit = filters.And(types, x)
		}
		ign, err := filters.ParsePatterns(w.IgnorePaths)
		if err != nil {
			return nil, fmt.Errorf("watch[%d].ignorePaths: %w", i, err)
		}
		if r.labels, err = labels.Parse(w.LabelSelector); err != nil {
			return nil, fmt.Errorf("watch[%d].labelSelector: %w", i, err)
		}
		r.ignore = append(append(filters.Patterns{}, filters.DefaultIgnore...), ign...)
		if r.redactPaths, err = filters.ParsePatterns(w.RedactPaths); err != nil {
			return nil, fmt.Errorf("watch[%d].redactPaths: %w", i, err)
		}
		if w.Redact == "hash" {
			r.redactKey = key
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// Selects reports whether the rule's label selector admits obj.
func (r *Rule) Selects(obj *unstructured.Unstructured) bool {
	return r.labels == nil || r.labels.Matches(labels.Set(obj.GetLabels()))
}

func (r *Rule) RoutesTo(sink string) bool {
	for _, s := range r.Sinks {
		if s == sink {
			return true
		}
	}
	return false
}

// Redactor returns the Redactor for objects of res (the rule's resource),
// or nil when nothing is redacted.
func (r *Rule) Redactor(res resource.Resource) *filters.Redactor {
	r.redactOnce.Do(func() {
		ps := r.redactPaths
		if res.GVR.Group == "" && res.GVR.Resource == "secrets" && r.Config.Redact != "none" {
			ps = append(append(filters.Patterns{}, filters.SecretPaths...), ps...)
		}
		if len(ps) > 0 {
			r.redact = filters.NewRedactor(ps, r.redactKey)
		}
	})
	return r.redact
}

// visibleOps returns the patch the rule shows from old to new: the diff of
// their projections without the ignored paths, never addressing a path below
// a redacted value (red may be nil). A change left with only a generation
// bump, or only status changes when the rule ignores those, shows nothing.
// Since a suppressed status change leaves the consumer with an older status,
// a rule that ignores status-only changes carries any status change as one
// op on /status as a whole, which applies whatever status the consumer holds.
func (r *Rule) visibleOps(old, new map[string]any, red *filters.Redactor) []jsonpatch.Op {
	o := jsonpatch.Options{Ignore: r.ignore}
	if ps := red.Patterns(); len(ps) > 0 {
		o.Opaque = ps
	}
	ops := o.Diff(old, new)
	onlyGeneration, onlyStatus := true, true
	for _, op := range ops {
		onlyGeneration = onlyGeneration && op.Path == filters.GenerationPath
		onlyStatus = onlyStatus && isStatus(op.Path)
	}
	if len(ops) == 0 || onlyGeneration || (r.Config.IgnoreStatusOnly && onlyStatus) {
		return nil
	}
	if r.Config.IgnoreStatusOnly {
		ops = wholeStatus(ops, o, new)
	}
	return ops
}

func isStatus(path string) bool { return path == "/status" || strings.HasPrefix(path, "/status/") }

// wholeStatus replaces the ops on /status and below by one add (or remove)
// of the projected /status of new.
func wholeStatus(ops []jsonpatch.Op, o jsonpatch.Options, new map[string]any) []jsonpatch.Op {
	out := make([]jsonpatch.Op, 0, len(ops))
	done := false
	for _, op := range ops {
		if !isStatus(op.Path) {
			out = append(out, op)
			continue
		}
		if done {
			continue
		}
		done = true
		proj, _ := o.Project(new).(map[string]any)
		if st, ok := proj["status"]; ok {
			out = append(out, jsonpatch.Op{Op: jsonpatch.OpAdd, Path: "/status", Value: st})
		} else {
			out = append(out, jsonpatch.Op{Op: jsonpatch.OpRemove, Path: "/status"})
		}
	}
	return out
}

// EventType is the config's name of a change.
func EventType(c event.Change) string {
	switch c {
	case event.Added:
		return config.EventAdded
	case event.Modified:
		return config.EventModified
	}
	return config.EventDeleted
}
