package plan

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

func typesUID(s string) types.UID { return types.UID(s) }

// render turns a change into the CloudEvent a rule shows, or nil when the
// rule shows nothing: not admitted by its event types or filter, or a
// modification with nothing left once ignored paths are removed. Each rule
// diffs with its own ignored and redacted paths (rule.visibleOps).
// A filter's runtime error counts as no match and is returned. An Event's
// deletion shows nothing unless the rule says expiry: emit (events.go);
// enriching rules add the involved object's metadata (enrich.go).
// m is c.obj's metadata (metaOf), read once by the caller.
func render(o Origin, res resource.Resource, key state.Key, c Change, m Meta, r *Rule, now time.Time) (*event.Event, error) {
	if c.Kind == event.Deleted && r.SkipsExpiry(res) {
		return nil, nil
	}
	in := filters.Input{Type: EventType(c.Kind), Object: c.Obj.Object}
	var visible []jsonpatch.Op
	red := r.Redactor(res)
	if c.Kind == event.Modified && c.replay != nil {
		// Sent before a restart: the same patch again (redacted already).
		visible = c.replay.Patch
		if c.prev.Object != nil {
			in.OldObject = c.prev.Object.Object
		}
		in.ChangedPaths = c.replay.ChangedPaths
	} else if c.Kind == event.Modified && c.prev.Object != nil {
		cur := c.Obj.Object
		if c.prev.AtRest {
			// The base is what the sink was sent, redacted: compare like
			// with like.
			cur = red.Object(cur)
		}
		visible = r.visibleOps(c.prev.Object.Object, cur, red)
		if len(visible) == 0 {
			if !c.prev.AtRest || red == nil || c.prev.ResourceVersion == c.Obj.GetResourceVersion() {
				return nil, nil
			}
			// A redacted value may have changed while kubefeed was down:
			// nothing visible differs, but the consumer learns the version.
			visible = []jsonpatch.Op{}
		}
		in.OldObject = c.prev.Object.Object
		in.ChangedPaths = jsonpatch.ChangedPaths(visible)
	}
	if ok, err := r.admit.Match(in); !ok || err != nil {
		return nil, err
	}
	data := &event.ChangeData{Object: red.Object(WithoutManagedFields(withTypeMeta(c.Obj, res))), Recovered: c.recovered}
	if r.Enrich != nil {
		data.InvolvedObject = r.Enrich.Lookup(c.Obj.Object)
	}
	if c.Kind == event.Modified {
		data.PreviousResourceVersion = c.prev.ResourceVersion
		if visible != nil {
			data.Patch = visible
			if c.replay == nil {
				data.Patch = red.Ops(visible)
			}
			data.ChangedPaths = in.ChangedPaths
			if r.Config.OldObject && c.prev.Object != nil {
				data.OldObject = red.Object(WithoutManagedFields(withTypeMeta(c.prev.Object, res)))
			}
		}
	}
	if r.Config.Attribution == config.AttributionManagers {
		var prev map[string]any
		if c.prev.Object != nil {
			prev = c.prev.Object.Object
		}
		data.ChangedBy = ChangedBy(c.Kind, prev, c.Obj.Object, visible)
	}
	rv, uid := m.ResourceVersion, m.UID
	return &event.Event{
		SpecVersion:     event.SpecVersion,
		ID:              event.ID(uid, rv, c.Kind),
		Source:          o.source,
		Type:            c.Kind.Type(),
		Subject:         res.Path(key.Namespace, key.Name),
		Time:            now.UTC(),
		DataContentType: event.DataContentType,
		Cluster:         o.cluster,
		APIVersion:      apiVersionOf(c.Obj.Object, res),
		Kind:            res.GVK.Kind,
		Resource:        res.GVR.Resource,
		Namespace:       key.Namespace,
		Name:            key.Name,
		UID:             uid,
		ResourceVersion: rv,
		ChangedBy:       event.Managers(data.ChangedBy),
		Data:            data,
	}, nil
}

// Origin is who renders events: the cluster name and the CloudEvents
// source, kubefeed/<cluster>, built once when the exporter is made rather
// than per event.
type Origin struct {
	cluster, source string
}

func NewOrigin(cluster string) Origin { return Origin{cluster: cluster, source: "kubefeed/" + cluster} }

// withTypeMeta returns the object's content with apiVersion and kind set.
// Objects in the cache already carry them (the transform sets them); the
// copy is shallow and only made when they are missing.
func withTypeMeta(obj *unstructured.Unstructured, res resource.Resource) map[string]any {
	m := obj.Object
	if hasTypeMeta(m, res) {
		return m
	}
	out := make(map[string]any, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	out["apiVersion"] = res.APIVersion()
	out["kind"] = res.GVK.Kind
	return out
}

// hasTypeMeta reports whether m carries res's apiVersion and kind, as
// strings: a missing, null or non-string one is not "" (a resource with no
// kind or version still gets them set).
func hasTypeMeta(m map[string]any, res resource.Resource) bool {
	av, okAV := m["apiVersion"].(string)
	k, okK := m["kind"].(string)
	return okAV && okK && k == res.GVK.Kind && res.IsAPIVersion(av)
}

// apiVersionOf is res's apiVersion, taken from m when it carries it (the
// transform set it), so that no string is built per event.
func apiVersionOf(m map[string]any, res resource.Resource) string {
	if av, _ := m["apiVersion"].(string); res.IsAPIVersion(av) {
		return av
	}
	return res.APIVersion()
}
