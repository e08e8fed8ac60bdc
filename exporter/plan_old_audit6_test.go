package exporter

// The pre-change plan, render and withTypeMeta (commit 0a283c2), renamed,
// as the reference the differential test in plan_equiv_audit6_test.go
// compares the current code against. It is a frozen copy on purpose: the
// read-once metadata change was meant to render byte for byte what this
// did. A change that means to render something else retires this file and
// TestAudit6PlanAsBefore with it; it does not edit the copy.

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

func oldPlan6(o origin, k Key, last *Record, attempted *Record, cur current, tomb *tombstone, recovered bool, now time.Time) outcome {
	var out outcome
	changes := decide(last, cur.obj, tomb)
	if attempted != nil && attempted.UID != "" && (last == nil || attempted.UID != last.UID) && (cur.obj == nil || string(cur.obj.GetUID()) != attempted.UID) {
		// A send of another incarnation failed: the sink may hold it (a lost
		// ack), so it is retracted after what was acknowledged is.
		retract := deleted(*attempted, tomb)
		i := 0
		for i < len(changes) && changes[i].kind == event.Deleted {
			i++
		}
		changes = append(changes[:i], append([]change{retract}, changes[i:]...)...)
	}
	if recovered {
		for i := range changes {
			changes[i].recovered = true
		}
	}
	out.changes = changes
	var delivering *rule
	for _, c := range changes {
		rules := cur.rules
		if c.kind == event.Deleted {
			rules = deletionRules(cur.rules, c.rule, c.obj)
		}
		for _, rl := range rules {
			ev, err := oldRender6(o, cur.res, k, c, rl, now)
			if err != nil {
				out.filterErrors++
			}
			if ev != nil {
				out.events = append(out.events, ev)
				if c.kind != event.Deleted {
					delivering = rl
				}
				break
			}
		}
	}
	if cur.obj == nil {
		out.forget = true
		return out
	}
	rec := recordOf(cur.obj)
	rec.Scope = cur.scope
	switch {
	case delivering != nil:
		rec.Rule = delivering.index + 1
	case last != nil && last.UID == rec.UID && hasRule(cur.rules, last.Rule):
		// Nothing shown (filtered or ignored): the record keeps the rule
		// that last delivered the object.
		rec.Rule = last.Rule
	case len(cur.rules) > 0:
		// Unknown (restored from a checkpoint, or the rule left the
		// config): the first rule that selects the object now.
		rec.Rule = cur.rules[0].index + 1
	}
	for _, rl := range cur.rules {
		if rl.index+1 == rec.Rule {
			rec.Redact = rl.redactor(cur.res)
		}
	}
	out.record = &rec
	return out
}

func oldRender6(o origin, res Resource, key Key, c change, r *rule, now time.Time) (*event.Event, error) {
	if c.kind == event.Deleted && r.skipsExpiry(res) {
		return nil, nil
	}
	in := filters.Input{Type: eventType(c.kind), Object: c.obj.Object}
	var visible []jsonpatch.Op
	red := r.redactor(res)
	if c.kind == event.Modified && c.prev.Object != nil {
		cur := c.obj.Object
		if c.prev.AtRest {
			// The base is what the sink was sent, redacted: compare like
			// with like.
			cur = red.Object(cur)
		}
		visible = r.visibleOps(c.prev.Object.Object, cur, red)
		if len(visible) == 0 {
			if !c.prev.AtRest || red == nil || c.prev.ResourceVersion == c.obj.GetResourceVersion() {
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
	data := &event.ChangeData{Object: red.Object(oldWithTypeMeta6(c.obj, res)), Recovered: c.recovered}
	if r.enrich != nil {
		data.InvolvedObject = r.enrich.lookup(c.obj.Object)
	}
	if c.kind == event.Modified {
		data.PreviousResourceVersion = c.prev.ResourceVersion
		if visible != nil {
			data.Patch = red.Ops(visible)
			data.ChangedPaths = in.ChangedPaths
			if r.cfg.OldObject {
				data.OldObject = red.Object(oldWithTypeMeta6(c.prev.Object, res))
			}
		}
	}
	m := metaOf(c.obj)
	rv, uid := m.resourceVersion, m.uid
	return &event.Event{
		SpecVersion:     event.SpecVersion,
		ID:              event.ID(uid, rv, c.kind),
		Source:          o.source,
		Type:            c.kind.Type(),
		Subject:         res.Path(key.Namespace, key.Name),
		Time:            now.UTC(),
		DataContentType: event.DataContentType,
		Cluster:         o.cluster,
		APIVersion:      res.APIVersion(),
		Kind:            res.GVK.Kind,
		Resource:        res.GVR.Resource,
		Namespace:       key.Namespace,
		Name:            key.Name,
		UID:             uid,
		ResourceVersion: rv,
		Data:            data,
	}, nil
}

func oldWithTypeMeta6(obj *unstructured.Unstructured, res Resource) map[string]any {
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
