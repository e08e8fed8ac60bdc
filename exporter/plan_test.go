package exporter

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

func planRules(t *testing.T, watch ...config.Watch) []*rule {
	t.Helper()
	rules, err := compileRules(newConfig(watch))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestPlan(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "configmaps"})
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	rec := func(uid, rv string) *Record { r := recordOf(obj(uid, rv)); r.Rule = 1; return &r }
	withData := func(uid, rv, v string) *unstructured.Unstructured {
		u := obj(uid, rv)
		u.Object["data"] = map[string]any{"k": v}
		return u
	}
	for _, tc := range []struct {
		name      string
		last      *Record
		attempted *Record
		cur       *unstructured.Unstructured
		tomb      *tombstone
		recovered bool
		want      []string // event types, then "uid@rv" of each
		wantUIDs  []string
		forget    bool
	}{
		{name: "added", cur: obj("a", "1"), want: []string{"added"}, wantUIDs: []string{"a"}},
		{name: "resync", last: rec("a", "1"), cur: obj("a", "1")},
		{name: "modified", last: &Record{UID: "a", ResourceVersion: "1", Object: withData("a", "1", "x"), Rule: 1}, cur: withData("a", "2", "y"), want: []string{"modified"}, wantUIDs: []string{"a"}},
		{name: "modified, nothing visible (generation only)", last: &Record{UID: "a", ResourceVersion: "1", Object: obj("a", "1"), Rule: 1}, cur: obj("a", "2")},
		{name: "deleted", last: rec("a", "1"), want: []string{"deleted"}, wantUIDs: []string{"a"}, forget: true},
		{name: "uid change", last: rec("a", "1"), cur: obj("b", "3"), want: []string{"deleted", "added"}, wantUIDs: []string{"a", "b"}},
		// A lost ack across a uid change: b was sent but not acknowledged,
		// then deleted too. The sink may hold b: both deletions go out.
		{name: "lost ack of another incarnation, then gone", last: rec("a", "1"), attempted: rec("b", "3"), want: []string{"deleted", "deleted"}, wantUIDs: []string{"a", "b"}, forget: true},
		{name: "lost ack of another incarnation, then a third", last: rec("a", "1"), attempted: rec("b", "3"), cur: obj("c", "5"), want: []string{"deleted", "deleted", "added"}, wantUIDs: []string{"a", "b", "c"}},
		{name: "lost ack, never acknowledged, gone", attempted: rec("b", "3"), want: []string{"deleted"}, wantUIDs: []string{"b"}, forget: true},
		{name: "lost ack of the same incarnation is not retracted", last: rec("a", "1"), attempted: rec("a", "2"), cur: obj("a", "2"), want: nil},
		{name: "recovered", cur: obj("a", "1"), recovered: true, want: []string{"added"}, wantUIDs: []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := current{obj: tc.cur, rules: rules, res: cmRes, scope: "configmaps"}
			out := plan(newOrigin("c"), k, tc.last, tc.attempted, cur, tc.tomb, tc.recovered, fixedTime(time.Unix(0, 0)), true)
			if len(out.events) != len(tc.want) {
				t.Fatalf("%d events%s, want %v", len(out.events), summary(out.events), tc.want)
			}
			for i, ev := range out.events {
				if ev.Type != "io.kubefeed.resource."+tc.want[i] || ev.UID != tc.wantUIDs[i] {
					t.Errorf("event %d: %s uid %s, want %s uid %s", i, ev.Type, ev.UID, tc.want[i], tc.wantUIDs[i])
				}
				if ev.Data.(*event.ChangeData).Recovered != (tc.recovered || ev.Type == event.Deleted.Type() && tc.tomb == nil) {
					t.Errorf("event %d recovered = %v", i, ev.Data.(*event.ChangeData).Recovered)
				}
			}
			if out.forget != tc.forget {
				t.Errorf("forget = %v, want %v", out.forget, tc.forget)
			}
			if tc.cur != nil && (out.record == nil || out.record.UID != string(tc.cur.GetUID()) || out.record.Rule != 1) {
				t.Errorf("record = %+v, want the current state by rule 1", out.record)
			}
		})
	}
}

// The record keeps the rule that rendered it and its redaction, so that
// the checkpoint stores only redacted state.
func TestPlanRecordCarriesRedaction(t *testing.T) {
	rules := planRules(t, config.Watch{Resource: "secrets"})
	s := obj("a", "1")
	s.Object["data"] = map[string]any{"pw": "c2VjcmV0"}
	out := plan(newOrigin("c"), Key{GVR: secretRes.GVR, Namespace: "a", Name: "x"}, nil, nil, current{obj: s, rules: rules, res: secretRes}, nil, false, fixedTime(time.Now()), true)
	if out.record == nil || out.record.Redact == nil {
		t.Fatalf("record %+v has no redactor", out.record)
	}
	if got := out.record.Redact.Object(out.record.Object.Object)["data"].(map[string]any)["pw"]; got == "c2VjcmV0" {
		t.Error("the record's redaction leaves the value")
	}
}

// A worker that finishes a key keeps what a handler noted meanwhile.
func TestPendingKeepsWhatWasNotedDuringSend(t *testing.T) {
	p := newPendingSet()
	k := keyItem(Key{Name: "x"})
	g1 := &gap{ev: &event.Event{ID: "g1"}}
	p.note(k, g1, time.Now())
	snap := p.snapshot(k)
	g2 := &gap{ev: &event.Event{ID: "g2"}}
	p.note(k, g2, time.Now()) // a relist while the worker sends
	p.finish(k, snap)
	if got := p.snapshot(k); got.recovered != g2 {
		t.Fatalf("recovered = %v, want the later gap kept", got.recovered)
	}
	snap = p.snapshot(k)
	p.finish(k, snap)
	if p.len() != 0 {
		t.Fatalf("%d records left after the key finished", p.len())
	}
	// A failure keeps the record with the attempted state.
	p.note(k, nil, time.Now())
	p.failed(k, &Record{UID: "b"})
	if got := p.snapshot(k); got.attempted == nil || got.attempted.UID != "b" {
		t.Fatalf("attempted = %+v", got.attempted)
	}
}

// Handlers and workers read routing while namespace-selector churn adds
// and removes rules (run with -race).
func TestRoutingSnapshotUnderChurn(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}, {Resource: "configmaps", LabelSelector: "x=y"}})
	ex, err := New(Options{Config: cfg, Sinks: map[string]sinks.Sink{"rec": &recorder{}}, clientFor: newFakeSource(0).client})
	if err != nil {
		t.Fatal(err)
	}
	id := scopeID{GVR: cmRes.GVR, Namespace: "a"}
	ex.joinScopes(ex.rules[0], cmRes, []scopeID{id}, false)
	s := ex.scopes[id]
	r := ex.runners[0]
	u := cm("a", "x", nil)
	u.SetUID("u")
	u.SetResourceVersion("1")
	_ = s.informer.GetIndexer().Add(u)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			ex.joinScopes(ex.rules[1], cmRes, []scopeID{id}, false)
			ex.leaveScopes(ex.rules[1], []scopeID{id})
		}
		close(stop)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.onAdd(u, false)
			_ = r.lookup(Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"})
		}
	}()
	wg.Wait()
	if got := len(s.table().rules); got != 1 {
		t.Errorf("rules after churn = %d, want 1", got)
	}
	r.queue.ShutDown()
}

// The ids of sent gap markers are remembered for an hour, not forever.
func TestGapBookForgetsOldMarkers(t *testing.T) {
	b := newGapBook()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		b.markSent(&gap{ev: &event.Event{ID: fmt.Sprintf("g%d", i)}}, start)
	}
	if !b.markSent(&gap{ev: &event.Event{ID: "late"}}, start.Add(2*gapMemory)) {
		t.Fatal("a new marker was taken as sent")
	}
	if n := len(b.sent); n != 1 {
		t.Fatalf("%d marker ids remembered after two hours, want 1", n)
	}
	if b.isSent(&gap{ev: &event.Event{ID: "g1"}}) {
		t.Error("an hour-old marker id is still remembered")
	}
}

// A provisional record (written before its added event was sent, then a
// crash) is offered again as added, or retracted when the object is gone.
func TestDecideProvisional(t *testing.T) {
	prov := recordOf(obj("a", "1"))
	prov.Provisional = true
	if got := decide(&prov, obj("a", "1"), nil); len(got) != 1 || got[0].kind != event.Added {
		t.Fatalf("provisional, same object: %v, want added again", got)
	}
	if got := decide(&prov, nil, nil); len(got) != 1 || got[0].kind != event.Deleted {
		t.Fatalf("provisional, object gone: %v, want deleted", got)
	}
	if got := decide(&prov, obj("b", "3"), nil); len(got) != 2 || got[0].kind != event.Deleted || got[1].kind != event.Added {
		t.Fatalf("provisional, new uid: %v, want deleted then added", got)
	}
}

// syncStore is a MemoryStore with group commit that records what was
// durable when each send began.
type syncStore struct {
	*MemoryStore
	mu      sync.Mutex
	durable map[Key]Record
}

func (s *syncStore) Sync(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Range(func(k Key, r Record) bool { s.durable[k] = r; return true })
	return nil
}

// With a checkpoint, an object new to the sink has a durable (provisional)
// record before its added event is sent, and a final one after the ack.
func TestProvisionalRecordBeforeSend(t *testing.T) {
	src := newFakeSource(0)
	st := &syncStore{MemoryStore: NewMemoryStore(), durable: map[Key]Record{}}
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	var atSend *Record
	var once sync.Once
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		once.Do(func() {
			st.mu.Lock()
			if r, ok := st.durable[k]; ok {
				atSend = &r
			}
			st.mu.Unlock()
		})
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", nil), false)
	sink.waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	if atSend == nil || !atSend.Provisional {
		t.Fatalf("durable record when the add was sent: %+v, want a provisional one", atSend)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, ok := st.Get(k); ok && !r.Provisional {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record stayed provisional after the ack")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With a checkpoint, a key whose object was replaced by a new incarnation
// (deleted and created again under the same name while the change was
// coalesced) is sent in two steps: the old incarnation's deletion first,
// forgotten durably, then the new one's added event after its provisional
// record is durable. Sent together, a kubefeed killed between the sink's
// ack and the checkpoint's commit would restart with the old record only,
// and never retract the new incarnation the sink holds once it is gone.
func TestNewIncarnationIsProvisionedBeforeSend(t *testing.T) {
	src := newFakeSource(0)
	st := &syncStore{MemoryStore: NewMemoryStore(), durable: map[Key]Record{}}
	k := Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	type sent struct {
		types   []string
		durable *Record
	}
	var mu sync.Mutex
	var sends []sent
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		s := sent{}
		for _, e := range evs {
			s.types = append(s.types, e.Type+" "+e.UID)
		}
		st.mu.Lock()
		if r, ok := st.durable[k]; ok {
			s.durable = &r
		}
		st.mu.Unlock()
		mu.Lock()
		sends = append(sends, s)
		mu.Unlock()
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
	h.waitReady()
	first := cm("a", "x", nil)
	first.SetUID("uid-1")
	src.apply(cmRes.GVR, first, false)
	sink.waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	// Replaced while the watch was down: the relist sees only the new one.
	src.remove(cmRes.GVR, "a", "x", true)
	second := cm("a", "x", nil)
	second.SetUID("uid-2")
	src.apply(cmRes.GVR, second, true)
	src.expire(cmRes.GVR)
	sink.waitFor(t, "deleted and added", func(e []*event.Event) bool {
		return count(e, event.Deleted.Type()) == 1 && count(e, event.Added.Type()) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	var last sent
	for _, s := range sends {
		for _, typ := range s.types {
			if typ == event.Added.Type()+" uid-2" {
				last = s
			}
		}
	}
	if len(last.types) != 1 {
		t.Fatalf("the new incarnation was sent with %v, want its added event alone", last.types)
	}
	if last.durable == nil || !last.durable.Provisional || last.durable.UID != "uid-2" {
		t.Fatalf("durable record when the new incarnation was sent: %+v, want a provisional one of uid-2", last.durable)
	}
}
