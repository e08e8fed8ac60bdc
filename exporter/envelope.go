package exporter

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/exporter/diff"
	"github.com/kubefeed/kubefeed/exporter/event"
)

func typesUID(s string) types.UID { return types.UID(s) }

// envelope builds the CloudEvent for a change. It returns nil when a modified
// change has nothing left to show once ignored paths are removed.
func envelope(cluster string, res Resource, key Key, c change, r *rule, now time.Time) *event.Event {
	obj := c.obj
	data := &event.ChangeData{Object: withTypeMeta(obj, res), Recovered: c.recovered}
	if c.kind == event.Modified {
		data.PreviousResourceVersion = c.prev.ResourceVersion
		if c.prev.Object != nil {
			ops := diff.Diff(c.prev.Object.Object, obj.Object)
			kept := ops[:0]
			for _, op := range ops {
				if !r.ignore.Match(op.Path) {
					kept = append(kept, op)
				}
			}
			if len(kept) == 0 {
				return nil
			}
			data.Patch = kept
			data.ChangedPaths = diff.ChangedPaths(kept)
			if r.cfg.OldObject {
				data.OldObject = withTypeMeta(c.prev.Object, res)
			}
		}
	}
	rv := obj.GetResourceVersion()
	uid := string(obj.GetUID())
	return &event.Event{
		SpecVersion:     event.SpecVersion,
		ID:              event.ID(uid, rv, c.kind),
		Source:          "kubefeed/" + cluster,
		Type:            c.kind.Type(),
		Subject:         res.Path(key.Namespace, key.Name),
		Time:            now.UTC(),
		DataContentType: event.DataContentType,
		Cluster:         cluster,
		APIVersion:      res.APIVersion(),
		Kind:            res.GVK.Kind,
		Resource:        res.GVR.Resource,
		Namespace:       key.Namespace,
		Name:            key.Name,
		UID:             uid,
		ResourceVersion: rv,
		Data:            data,
	}
}

// withTypeMeta returns the object's content with apiVersion and kind set.
// Objects in the cache already carry them (the transform sets them); the
// copy is shallow and only made when they are missing.
func withTypeMeta(obj *unstructured.Unstructured, res Resource) map[string]any {
	m := obj.Object
	if m["apiVersion"] == res.APIVersion() && m["kind"] == res.GVK.Kind {
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
