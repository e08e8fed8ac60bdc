package exporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/filters"
)

const auditSecret = "c2VjcmV0LWh1bnRlcjI=" // base64 of "secret-hunter2"

func auditSecretObj(labels map[string]any) *unstructured.Unstructured {
	md := map[string]any{"namespace": "a", "name": "pw"}
	if labels != nil {
		md["labels"] = labels
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": md, "data": map[string]any{"password": auditSecret}}}
}

// restoredSecret seeds st as checkpoint.decodeRecord restores a record of
// format 2: the state as the rule redacted it, no Rule, no Redact.
func restoredSecret(t *testing.T, src *fakeSource) (*restoredStore, Key) {
	t.Helper()
	u := src.apply(secretRes.GVR, auditSecretObj(nil), true)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Object = &unstructured.Unstructured{Object: filters.NewRedactor(filters.SecretPaths, nil).Object(u.Object)}
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	rec.AtRest = true // as exporter/checkpoint restores it
	k := Key{GVR: secretRes.GVR, Namespace: "a", Name: "pw"}
	st.Put(k, rec)
	st.Put(sentinelKey(scopeID{GVR: secretRes.GVR}), Record{Scope: rec.Scope})
	return st, k
}

// AUDIT (fixed): after a restart, a Secret that did not change while
// kubefeed was down is re-Put by plan with Rule 0 and Redact nil (the
// restored record carries no rule), so the checkpoint's next flush writes
// the raw Secret (encodeRecord redacts with r.Redact only). Issue 12:
// "nothing redacted at rest".
func TestAuditRestoredUnchangedSecretIsStoredRedacted(t *testing.T) {
	src := newFakeSource(0)
	st, k := restoredSecret(t, src)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	h.waitReady()
	deadline := time.Now().Add(10 * time.Second)
	for h.ex.runners[0].pending.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	rec, ok := st.Get(k)
	if !ok {
		t.Fatal("record gone")
	}
	atRest := rec.Redact.Object(rec.Object.Object) // what encodeRecord writes
	b, _ := json.Marshal(atRest)
	if strings.Contains(string(b), auditSecret) {
		t.Errorf("the checkpoint would store the Secret's value in clear (rule %d, redact %v): %s", rec.Rule, rec.Redact != nil, b)
	}
}

// AUDIT (fixed): after a restart the restored base is the redacted state,
// but plan diffs it against the raw current object: a label added to a
// Secret while kubefeed was down arrives as a recovered modified event
// whose patch carries a spurious "replace /data/password" (and that path
// in changedPaths) although the password did not change.
func TestAuditRestoredSecretPatchHasNoSpuriousRedactedOps(t *testing.T) {
	src := newFakeSource(0)
	st, _ := restoredSecret(t, src)
	u := auditSecretObj(map[string]any{"tier": "db"})
	src.apply(secretRes.GVR, u, true) // changed while kubefeed was down
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the recovered label change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	d := evs[len(evs)-1].Data.(*event.ChangeData)
	for _, op := range d.Patch {
		if strings.HasPrefix(op.Path, "/data") {
			t.Errorf("patch of a label change touches %s %s (changedPaths %v)", op.Op, op.Path, d.ChangedPaths)
		}
	}
}

// AUDIT (fixed): two rules of one late resource (a CRD installed after
// start) share a scope but feed different sinks. resolveLoop resolves and
// starts the scope for the first rule; the second joins the existing
// scope, and joinScopes unparks only for a created scope, with the first
// rule's routes. Sink b's parked checkpoint records are then forgotten by
// forgetParked: a deletion made while kubefeed was down never reaches b.
func TestAuditLateResourceSecondRuleKeepsParkedRecords(t *testing.T) {
	src := newFakeSource(0)
	res := newResolver("widgets.example.com")
	stA := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	stB := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	gone := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"namespace": "a", "name": "w1", "uid": "u-w1", "resourceVersion": "7"}}}
	rec := recordOf(gone)
	rec.Scope = scopeID{GVR: widgetRes.GVR}.String()
	k := Key{GVR: widgetRes.GVR, Namespace: "a", Name: "w1"}
	stA.Put(k, rec)
	stB.Put(k, rec)
	cfg := newConfig([]config.Watch{
		{Resource: "widgets.example.com", Sinks: []string{"a"}},
		{Resource: "widgets.example.com", Sinks: []string{"b"}},
	}, "a", "b")
	h := startHarness(t, cfg, harnessOpts{src: src, resolver: res, stores: map[string]Store{"a": stA, "b": stB}})
	time.Sleep(100 * time.Millisecond) // several resolve attempts
	res.appear("widgets.example.com")
	h.sinks["a"].waitFor(t, "the deletion of w1 at a", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	h.sinks["b"].waitFor(t, "the deletion of w1 at b", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
}

// AUDIT (fixed): the rule that delivered an object is not kept across a
// restart (the checkpoint stores no rule; plan re-Puts an unchanged
// restored object with Rule 0). A Secret delivered by the redacting rule 1
// and deleted after the restart is then rendered by rule 0 (redact: none,
// a label selector the Secret does not match; scope.covers looks only at
// the namespace): the deleted event carries the Secret's value in clear.
func TestAuditDeletionAfterRestartRenderedByDeliveringRule(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(secretRes.GVR, auditSecretObj(nil), true)
	st := &restoredStore{MemoryStore: NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Object = &unstructured.Unstructured{Object: filters.NewRedactor(filters.SecretPaths, nil).Object(u.Object)}
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	st.Put(Key{GVR: secretRes.GVR, Namespace: "a", Name: "pw"}, rec)
	cfg := newConfig([]config.Watch{
		{Resource: "secrets", Namespaces: []string{"a"}, LabelSelector: "team=x", Redact: "none"},
		{Resource: "secrets"},
	})
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	h.waitReady()
	deadline := time.Now().Add(10 * time.Second)
	for h.ex.runners[0].pending.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	src.remove(secretRes.GVR, "a", "pw", false)
	evs := h.sinks["rec"].waitFor(t, "deleted", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	for _, e := range evs {
		b, _ := json.Marshal(e.Data)
		if strings.Contains(string(b), auditSecret) {
			t.Errorf("%s event carries the Secret's value in clear: %s", e.Type, b)
		}
	}
}

// A Secret whose value changed while kubefeed was down: the redacted base
// cannot show it, yet the consumer must learn the new version — a
// recovered modified event with an empty patch, and nothing in clear.
func TestRestoredSecretValueChangeStillEmits(t *testing.T) {
	src := newFakeSource(0)
	st, _ := restoredSecret(t, src)
	u := auditSecretObj(nil)
	u.Object["data"] = map[string]any{"password": "bmV3LXZhbHVl"}
	cur := src.apply(secretRes.GVR, u, true) // changed while kubefeed was down
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the recovered value change", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	ev := evs[len(evs)-1]
	d := ev.Data.(*event.ChangeData)
	if ev.ResourceVersion != cur.GetResourceVersion() || !d.Recovered || len(d.Patch) != 0 {
		t.Fatalf("event rv %s recovered %v patch %v, want rv %s, recovered, empty patch", ev.ResourceVersion, d.Recovered, d.Patch, cur.GetResourceVersion())
	}
	b, _ := event.Marshal(ev)
	if strings.Contains(string(b), "bmV3LXZhbHVl") {
		t.Errorf("the new value is in the event: %s", b)
	}
}
