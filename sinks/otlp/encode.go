package otlp

import (
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/kubefeed/kubefeed/event"
)

// Instrumentation scopes.
const (
	// ScopeK8sObjects is the scope name of the Collector's k8sobjects
	// receiver: backends and processors that recognise its records
	// recognise the k8sobjects shape's.
	ScopeK8sObjects = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sobjectsreceiver"
	// ScopeEntity is the scope of the entity shape's records.
	ScopeEntity = "github.com/kubefeed/kubefeed/sinks/otlp"
)

// Attributes and event names. The resource and k8sobjects names are the
// Collector's and the semantic conventions'; the cloudevents.* ones are
// the semantic conventions for CloudEvents; kubefeed.* carry what only
// kubefeed knows.
const (
	AttrClusterName   = "k8s.cluster.name"
	AttrNamespaceName = "k8s.namespace.name"
	AttrResourceName  = "k8s.resource.name"
	AttrEventDomain   = "event.domain"
	AttrEventName     = "event.name"

	AttrEventID      = "cloudevents.event_id"
	AttrEventSource  = "cloudevents.event_source"
	AttrEventType    = "cloudevents.event_type"
	AttrEventSubject = "cloudevents.event_subject"

	AttrResourceVersion         = "kubefeed.resource_version"
	AttrPreviousResourceVersion = "kubefeed.previous_resource_version"
	AttrPatch                   = "kubefeed.patch"
	AttrChangedPaths            = "kubefeed.changed_paths"
	AttrRecovered               = "kubefeed.recovered"
	AttrTruncated               = "kubefeed.truncated"
	AttrOldObject               = "kubefeed.old_object"
	AttrChangedBy               = "kubefeed.changed_by"
	AttrInvolvedObject          = "kubefeed.involved_object"
	AttrGapScope                = "kubefeed.gap.scope"
	AttrGapFrom                 = "kubefeed.gap.from"
	AttrGapTo                   = "kubefeed.gap.to"
	AttrGapReason               = "kubefeed.gap.reason"

	AttrEntityType           = "entity.type"
	AttrEntityID             = "entity.id"
	AttrEntityDescription    = "entity.description"
	AttrEntityRelationships  = "entity.relationships"
	AttrEntityReportInterval = "entity.report.interval"
	AttrRelationshipType     = "relationship.type"

	EventEntityState  = "entity.state"
	EventEntityDelete = "entity.delete"
	// EventGap is the event name of a gap marker, in both shapes.
	EventGap = "kubefeed.gap"
)

// shape encodes events into log records.
type shape struct {
	name    string
	version string // the scope's version: kubefeed's
}

// resourceKey is what the records of one ResourceLogs share: the
// namespace in the k8sobjects shape (as the receiver groups them), the
// cluster alone in the entity shape.
func (sh shape) resourceKey(e *event.Event) string {
	if sh.name == ShapeK8sObjects {
		return e.Namespace
	}
	return ""
}

// resource fills the attributes of the ResourceLogs of e's key.
func (sh shape) resource(attrs pcommon.Map, e *event.Event) {
	if e.Cluster != "" {
		attrs.PutStr(AttrClusterName, e.Cluster)
	}
	if ns := sh.resourceKey(e); ns != "" {
		attrs.PutStr(AttrNamespaceName, ns)
	}
}

// scope names the records' instrumentation scope.
func (sh shape) scope(s pcommon.InstrumentationScope) {
	if sh.name == ShapeK8sObjects {
		s.SetName(ScopeK8sObjects)
	} else {
		s.SetName(ScopeEntity)
	}
	s.SetVersion(sh.version)
}

// record encodes e into lr (a new record).
func (sh shape) record(lr plog.LogRecord, e *event.Event) {
	ts := pcommon.NewTimestampFromTime(e.Time)
	lr.SetTimestamp(ts)
	lr.SetObservedTimestamp(ts)
	attrs := lr.Attributes()
	attrs.PutStr(AttrEventID, e.ID)
	attrs.PutStr(AttrEventSource, e.Source)
	attrs.PutStr(AttrEventType, e.Type)
	if e.Subject != "" {
		attrs.PutStr(AttrEventSubject, e.Subject)
	}
	switch d := e.Data.(type) {
	case *event.ChangeData:
		if sh.name == ShapeEntity {
			sh.entity(lr, e, d)
		} else {
			sh.k8sObject(lr, e, d)
		}
		changeAttrs(attrs, e, d)
	case *event.GapData:
		gap(lr, d)
	default:
		// Markers kubefeed may add (snapshots): the type names the
		// event, the data is the body.
		lr.SetEventName(e.Type)
		putValue(lr.Body(), e.Data)
	}
}

// k8sObject writes what the k8sobjects receiver writes for a watch event:
// body {type, object}, k8s.resource.name, event.domain k8s and event.name
// the object's name.
func (sh shape) k8sObject(lr plog.LogRecord, e *event.Event, d *event.ChangeData) {
	body := lr.Body().SetEmptyMap()
	body.EnsureCapacity(2)
	body.PutStr("type", watchType(e.Change()))
	putValue(body.PutEmpty("object"), d.Object)
	attrs := lr.Attributes()
	attrs.PutStr(AttrResourceName, e.Resource)
	if e.Name != "" {
		attrs.PutStr(AttrEventDomain, "k8s")
		attrs.PutStr(AttrEventName, e.Name)
	}
}

// watchType is the watch event type of a change: ADDED, MODIFIED,
// DELETED, or the change in capitals for others (SNAPSHOT).
func watchType(c event.Change) string {
	switch c {
	case event.Added:
		return "ADDED"
	case event.Modified:
		return "MODIFIED"
	case event.Deleted:
		return "DELETED"
	}
	return strings.ToUpper(string(c))
}

// entity writes an entity event: entity.delete for a deletion,
// entity.state for every other change; the object is the body.
func (sh shape) entity(lr plog.LogRecord, e *event.Event, d *event.ChangeData) {
	typ := EntityType(e.APIVersion, e.Kind)
	attrs := lr.Attributes()
	attrs.PutStr(AttrEntityType, typ)
	id := attrs.PutEmptyMap(AttrEntityID)
	id.PutStr(typ+".uid", e.UID)
	if e.Change() == event.Deleted {
		lr.SetEventName(EventEntityDelete)
	} else {
		lr.SetEventName(EventEntityState)
		desc := attrs.PutEmptyMap(AttrEntityDescription)
		md, _ := d.Object["metadata"].(map[string]any)
		if e.Name != "" {
			desc.PutStr(typ+".name", e.Name)
		}
		if e.Namespace != "" {
			desc.PutStr(AttrNamespaceName, e.Namespace)
		}
		for _, k := range []string{"labels", "annotations"} {
			if m, ok := md[k].(map[string]any); ok && len(m) > 0 {
				putMap(desc.PutEmptyMap(typ+"."+k), m)
			}
		}
		// kubefeed sends a state event on every change and no periodic
		// one: 0, as the specification says.
		attrs.PutInt(AttrEntityReportInterval, 0)
		relationships(attrs, md)
	}
	putValue(lr.Body(), d.Object)
}

// relationships writes part_of for each of the object's owners.
func relationships(attrs pcommon.Map, md map[string]any) {
	owners, _ := md["ownerReferences"].([]any)
	var rels pcommon.Slice
	for _, o := range owners {
		ref, ok := o.(map[string]any)
		if !ok {
			continue
		}
		apiVersion, _ := ref["apiVersion"].(string)
		kind, _ := ref["kind"].(string)
		uid, _ := ref["uid"].(string)
		if kind == "" || uid == "" {
			continue
		}
		if rels == (pcommon.Slice{}) {
			rels = attrs.PutEmptySlice(AttrEntityRelationships)
		}
		rel := rels.AppendEmpty().SetEmptyMap()
		rel.PutStr(AttrRelationshipType, "part_of")
		typ := EntityType(apiVersion, kind)
		rel.PutStr(AttrEntityType, typ)
		rel.PutEmptyMap(AttrEntityID).PutStr(typ+".uid", uid)
	}
}

// EntityType is the entity.type of a kind: k8s.<kind> in lower case for
// Kubernetes' own API groups (the core group, apps, batch, …, *.k8s.io),
// as the semantic conventions name k8s.pod and k8s.deployment;
// <group>.<kind> for every other group (example.com.widget), so that two
// groups' kinds of one name stay apart.
func EntityType(apiVersion, kind string) string {
	k := strings.ToLower(kind)
	group := ""
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		group = apiVersion[:i]
	}
	if !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io") {
		return "k8s." + k
	}
	return group + "." + k
}

// changeAttrs writes kubefeed's own attributes of a change.
func changeAttrs(attrs pcommon.Map, e *event.Event, d *event.ChangeData) {
	if e.ResourceVersion != "" {
		attrs.PutStr(AttrResourceVersion, e.ResourceVersion)
	}
	if d.PreviousResourceVersion != "" {
		attrs.PutStr(AttrPreviousResourceVersion, d.PreviousResourceVersion)
	}
	if len(d.Patch) > 0 {
		ops := attrs.PutEmptySlice(AttrPatch)
		ops.EnsureCapacity(len(d.Patch))
		for _, op := range d.Patch {
			m := ops.AppendEmpty().SetEmptyMap()
			m.PutStr("op", op.Op)
			m.PutStr("path", op.Path)
			if op.Op != "remove" {
				putValue(m.PutEmpty("value"), op.Value)
			}
		}
	}
	if len(d.ChangedPaths) > 0 {
		putStrings(attrs.PutEmptySlice(AttrChangedPaths), d.ChangedPaths)
	}
	attrs.PutBool(AttrRecovered, d.Recovered)
	if d.Truncated != "" {
		attrs.PutStr(AttrTruncated, d.Truncated)
	}
	if len(d.OldObject) > 0 {
		putMap(attrs.PutEmptyMap(AttrOldObject), d.OldObject)
	}
	if len(d.ChangedBy) > 0 {
		s := attrs.PutEmptySlice(AttrChangedBy)
		for _, f := range d.ChangedBy {
			m := s.AppendEmpty().SetEmptyMap()
			m.PutStr("manager", f.Manager)
			m.PutStr("operation", f.Operation)
			if f.Subresource != "" {
				m.PutStr("subresource", f.Subresource)
			}
			if f.Time != "" {
				m.PutStr("time", f.Time)
			}
		}
	}
	if d.InvolvedObject != nil {
		putReflected(attrs.PutEmpty(AttrInvolvedObject), d.InvolvedObject)
	}
}

// gap writes a gap marker: a warning whose attributes name the scope and
// the interval.
func gap(lr plog.LogRecord, d *event.GapData) {
	lr.SetEventName(EventGap)
	lr.SetSeverityNumber(plog.SeverityNumberWarn)
	lr.SetSeverityText("WARN")
	from, to := d.From.UTC().Format(time.RFC3339Nano), d.To.UTC().Format(time.RFC3339Nano)
	lr.Body().SetStr(fmt.Sprintf("kubefeed may have missed changes in %s between %s and %s: %s", d.Scope, from, to, d.Reason))
	attrs := lr.Attributes()
	attrs.PutStr(AttrGapScope, d.Scope)
	attrs.PutStr(AttrGapFrom, from)
	attrs.PutStr(AttrGapTo, to)
	attrs.PutStr(AttrGapReason, d.Reason)
}
