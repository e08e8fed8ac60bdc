package otlp_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/otlp"
)

var when = time.Date(2026, 11, 28, 15, 4, 5, 123456000, time.UTC)

func configMap(rv string, data map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{
			"name": "web", "namespace": "shop", "uid": "uid-web", "resourceVersion": rv,
			"labels": map[string]any{"app": "web"},
			"ownerReferences": []any{map[string]any{
				"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-deploy", "controller": true,
			}},
		},
		"data": data,
	}
}

func change(c event.Change, rv string, d *event.ChangeData) *event.Event {
	return &event.Event{
		SpecVersion: event.SpecVersion, ID: event.ID("uid-web", rv, c), Source: "kubefeed/prod", Type: c.Type(),
		Subject: "/api/v1/namespaces/shop/configmaps/web", Time: when, DataContentType: event.DataContentType,
		Cluster: "prod", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "shop", Name: "web",
		UID: "uid-web", ResourceVersion: rv, Data: d,
	}
}

func events() []*event.Event {
	added := change(event.Added, "10", &event.ChangeData{Object: configMap("10", map[string]any{"k": "v", "n": int64(1) << 60})})
	modified := change(event.Modified, "11", &event.ChangeData{
		Object:                  configMap("11", map[string]any{"k": "w", "n": int64(1) << 60}),
		Patch:                   []jsonpatch.Op{{Op: "replace", Path: "/data/k", Value: "w"}, {Op: "remove", Path: "/data/old"}},
		ChangedPaths:            []string{"/data/k", "/data/old"},
		PreviousResourceVersion: "10",
		ChangedBy:               []event.FieldManager{{Manager: "kubectl", Operation: "Update"}},
	})
	deleted := change(event.Deleted, "12", &event.ChangeData{Object: configMap("11", map[string]any{"k": "w"}), Recovered: true})
	gap := &event.Event{
		SpecVersion: event.SpecVersion, ID: "gap-1", Source: "kubefeed/prod", Type: event.TypeGap, Time: when,
		DataContentType: event.DataContentType, Cluster: "prod",
		Data: &event.GapData{Scope: "configmaps", From: when.Add(-time.Minute), To: when, Reason: "watch expired"},
	}
	return []*event.Event{added, modified, deleted, gap}
}

// records sends evs in one request and returns the records as the
// collector got them, with their resource and scope.
type got struct {
	resource map[string]any
	scope    plog.ScopeLogs
	record   plog.LogRecord
}

func sendAll(t *testing.T, shape string, evs []*event.Event) []got {
	t.Helper()
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Shape: shape, Batch: 100})
	if err := s.Send(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	var out []got
	for _, rl := range col.lastRequest(t).ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				out = append(out, got{resource: rl.Resource().Attributes().AsRaw(), scope: sl, record: lr})
			}
		}
	}
	if len(out) != len(evs) {
		t.Fatalf("got %d records, want %d", len(out), len(evs))
	}
	return out
}

func attr(lr plog.LogRecord, k string) any {
	v, ok := lr.Attributes().Get(k)
	if !ok {
		return nil
	}
	return v.AsRaw()
}

// sameJSON compares two values through their JSON (pdata turns ints into
// int64, kubefeed's objects may hold int).
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestK8sObjectsShape(t *testing.T) {
	evs := events()
	recs := sendAll(t, otlp.ShapeK8sObjects, evs)
	for i, r := range recs[:3] {
		e, lr := evs[i], r.record
		if want := map[string]any{"k8s.cluster.name": "prod", "k8s.namespace.name": "shop"}; !reflect.DeepEqual(r.resource, want) {
			t.Errorf("%s: resource %v, want %v", e.ID, r.resource, want)
		}
		if r.scope.Scope().Name() != otlp.ScopeK8sObjects || r.scope.Scope().Version() != "test" {
			t.Errorf("scope %q %q", r.scope.Scope().Name(), r.scope.Scope().Version())
		}
		wantType := []string{"ADDED", "MODIFIED", "DELETED"}[i]
		sameJSON(t, e.ID+" body", lr.Body().AsRaw(), map[string]any{"type": wantType, "object": e.Data.(*event.ChangeData).Object})
		if lr.Timestamp().AsTime() != when || lr.ObservedTimestamp().AsTime() != when {
			t.Errorf("%s: timestamps %v %v, want %v", e.ID, lr.Timestamp().AsTime(), lr.ObservedTimestamp().AsTime(), when)
		}
		for k, want := range map[string]any{
			"k8s.resource.name": "configmaps", "event.domain": "k8s", "event.name": "web",
			otlp.AttrEventID: e.ID, otlp.AttrEventSource: "kubefeed/prod", otlp.AttrEventType: e.Type,
			otlp.AttrEventSubject: e.Subject, otlp.AttrResourceVersion: e.ResourceVersion,
			otlp.AttrRecovered: i == 2,
		} {
			if got := attr(lr, k); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s = %#v, want %#v", e.ID, k, got, want)
			}
		}
		if lr.EventName() != "" {
			t.Errorf("%s: event name %q: the receiver sets none", e.ID, lr.EventName())
		}
	}
	mod := recs[1].record
	sameJSON(t, "patch", attr(mod, otlp.AttrPatch), []any{
		map[string]any{"op": "replace", "path": "/data/k", "value": "w"},
		map[string]any{"op": "remove", "path": "/data/old"},
	})
	sameJSON(t, "changed paths", attr(mod, otlp.AttrChangedPaths), []any{"/data/k", "/data/old"})
	sameJSON(t, "changed by", attr(mod, otlp.AttrChangedBy), []any{map[string]any{"manager": "kubectl", "operation": "Update"}})
	if got := attr(mod, otlp.AttrPreviousResourceVersion); got != "10" {
		t.Errorf("previous version %v", got)
	}
	// An integer beyond 2^53 keeps its digits.
	obj, _ := mod.Body().Map().Get("object")
	data, _ := obj.Map().Get("data")
	if n, _ := data.Map().Get("n"); n.Type() != pcommon.ValueTypeInt || n.Int() != 1<<60 {
		t.Errorf("data.n = %v (%v)", n.AsRaw(), n.Type())
	}
	checkGap(t, recs[3])
}

func checkGap(t *testing.T, r got) {
	t.Helper()
	lr := r.record
	if lr.EventName() != otlp.EventGap || lr.SeverityNumber() != plog.SeverityNumberWarn {
		t.Errorf("gap: event name %q severity %v", lr.EventName(), lr.SeverityNumber())
	}
	for k, want := range map[string]any{
		otlp.AttrGapScope: "configmaps", otlp.AttrGapReason: "watch expired", otlp.AttrEventID: "gap-1",
		otlp.AttrGapFrom: when.Add(-time.Minute).Format(time.RFC3339Nano), otlp.AttrGapTo: when.Format(time.RFC3339Nano),
		otlp.AttrEventType: event.TypeGap,
	} {
		if got := attr(lr, k); got != want {
			t.Errorf("gap: %s = %#v, want %#v", k, got, want)
		}
	}
	if !strings.Contains(lr.Body().Str(), "configmaps") || r.resource["k8s.namespace.name"] != nil {
		t.Errorf("gap: body %q resource %v", lr.Body().Str(), r.resource)
	}
}

func TestEntityShape(t *testing.T) {
	evs := events()
	recs := sendAll(t, otlp.ShapeEntity, evs)
	for i, r := range recs[:3] {
		e, lr := evs[i], r.record
		if want := map[string]any{"k8s.cluster.name": "prod"}; !reflect.DeepEqual(r.resource, want) {
			t.Errorf("%s: resource %v, want %v", e.ID, r.resource, want)
		}
		if r.scope.Scope().Name() != otlp.ScopeEntity {
			t.Errorf("scope %q", r.scope.Scope().Name())
		}
		wantName := []string{otlp.EventEntityState, otlp.EventEntityState, otlp.EventEntityDelete}[i]
		if lr.EventName() != wantName {
			t.Errorf("%s: event name %q, want %q", e.ID, lr.EventName(), wantName)
		}
		if attr(lr, otlp.AttrEntityType) != "k8s.configmap" {
			t.Errorf("%s: entity.type %v", e.ID, attr(lr, otlp.AttrEntityType))
		}
		sameJSON(t, e.ID+" entity.id", attr(lr, otlp.AttrEntityID), map[string]any{"k8s.configmap.uid": "uid-web"})
		sameJSON(t, e.ID+" body", lr.Body().AsRaw(), e.Data.(*event.ChangeData).Object)
		if lr.Timestamp().AsTime() != when {
			t.Errorf("%s: timestamp %v", e.ID, lr.Timestamp().AsTime())
		}
		if attr(lr, otlp.AttrEventID) != e.ID {
			t.Errorf("%s: id %v", e.ID, attr(lr, otlp.AttrEventID))
		}
		if wantName == otlp.EventEntityDelete {
			if attr(lr, otlp.AttrEntityDescription) != nil {
				t.Errorf("delete carries a description")
			}
			continue
		}
		sameJSON(t, e.ID+" description", attr(lr, otlp.AttrEntityDescription), map[string]any{
			"k8s.configmap.name": "web", "k8s.namespace.name": "shop", "k8s.configmap.labels": map[string]any{"app": "web"},
		})
		if got := attr(lr, otlp.AttrEntityReportInterval); got != int64(0) {
			t.Errorf("report interval %#v", got)
		}
		sameJSON(t, e.ID+" relationships", attr(lr, otlp.AttrEntityRelationships), []any{map[string]any{
			"relationship.type": "part_of", "entity.type": "k8s.deployment", "entity.id": map[string]any{"k8s.deployment.uid": "uid-deploy"},
		}})
	}
	checkGap(t, recs[3])
}

func TestEntityTypes(t *testing.T) {
	for _, c := range []struct{ apiVersion, kind, want string }{
		{"v1", "Pod", "k8s.pod"},
		{"apps/v1", "Deployment", "k8s.deployment"},
		{"batch/v1", "CronJob", "k8s.cronjob"},
		{"networking.k8s.io/v1", "Ingress", "k8s.ingress"},
		{"example.com/v1", "Widget", "example.com.widget"},
	} {
		if got := otlp.EntityType(c.apiVersion, c.kind); got != c.want {
			t.Errorf("EntityType(%s, %s) = %s, want %s", c.apiVersion, c.kind, got, c.want)
		}
	}
}

// An event larger than a request is shrunk as on the other sinks (the
// object reduced to its identity); one that cannot shrink enough fails
// for good, alone.
func TestTooLargeEventsShrinkOrFail(t *testing.T) {
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 1, MaxRequestBytes: 64 << 10})
	big := change(event.Added, "10", &event.ChangeData{Object: configMap("10", map[string]any{"blob": strings.Repeat("x", 100<<10)})})
	if err := s.Send(context.Background(), []*event.Event{big}); err != nil {
		t.Fatal(err)
	}
	lr := col.lastRequest(t).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	if got := attr(lr, otlp.AttrTruncated); got != sinks.TruncatedObject {
		t.Fatalf("truncated = %v", got)
	}
	obj, _ := lr.Body().Map().Get("object")
	if _, has := obj.Map().Get("data"); has {
		t.Fatal("the shrunk object kept its data")
	}
	huge := configMap("10", nil)
	huge["metadata"].(map[string]any)["labels"] = map[string]any{"l": strings.Repeat("y", 100<<10)}
	err := s.Send(context.Background(), []*event.Event{change(event.Added, "10", &event.ChangeData{Object: huge})})
	if !sinks.IsPermanent(err) || !strings.Contains(err.Error(), sinks.ErrTooLarge.Error()) {
		t.Fatalf("got %v, want a permanent too-large error", err)
	}
}

// Requests stay within batch records and maxRequestBytes.
func TestRequestsAreBoundedByCountAndBytes(t *testing.T) {
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 5, MaxRequestBytes: 64 << 10})
	var evs []*event.Event
	for i := range 12 {
		evs = append(evs, change(event.Added, string(rune('a'+i)), &event.ChangeData{Object: configMap("1", map[string]any{"blob": strings.Repeat("z", 20<<10)})}))
	}
	if err := s.Send(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var all []string
	for _, r := range col.requests {
		ids := ids(r)
		size := (&plog.ProtoMarshaler{}).LogsSize(r)
		if len(ids) > 5 || size > 64<<10 {
			t.Errorf("a request of %d records, %d bytes", len(ids), size)
		}
		all = append(all, ids...)
	}
	var want []string
	for _, e := range evs {
		want = append(want, e.ID)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("records %v, want %v in order", all, want)
	}
}
