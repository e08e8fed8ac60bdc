package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/internal/golden"
	"github.com/kubefeed/kubefeed/sinks"
)

// crashPoint runs an exporter with a checkpointed sink until the sink
// acknowledges the first event of type typ after change ran, and returns
// that event with the checkpoint as it was durable when the sink got it:
// what a kubefeed killed right after that ack restarts from.
func crashPoint(t *testing.T, src *fakeSource, k state.Key, setup, change func(), typ string) (*event.Event, map[state.Key]state.Record) {
	t.Helper()
	return crashAtWith(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, k, setup, change, typ, nil)
}

// restartFrom runs a new exporter over src whose sink restores durable,
// and returns the first event of type typ it sends.
func restartFrom(t *testing.T, src *fakeSource, durable map[state.Key]state.Record, typ string) *event.Event {
	t.Helper()
	return restartWith(t, newConfig([]config.Watch{{Resource: "configmaps"}}), src, durable, typ, func(r state.Record) state.Record { return r })
}

func sameEvent(t *testing.T, what string, first, again *event.Event) {
	t.Helper()
	a, err := event.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s sent again after a crash differs:\nfirst: %s\nagain: %s", what, a, b)
	}
}

// A deletion acknowledged by the sink just before kubefeed died, before
// its delivered state (the object gone) was durable, is sent again after
// the restart as the same event: the id of the deletion's version (not of
// the last delivered one), the final state, the time and the recovered
// mark of the first send.
func TestDeletionSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	src := newFakeSource(0)
	u := cm("a", "x", map[string]any{"v": "1"})
	u.SetUID("uid-x")
	first, durable := crashPoint(t, src, splitKey, func() { src.apply(cmRes.GVR, u, false) },
		func() { src.remove(cmRes.GVR, "a", "x", false) }, event.Deleted.Type())
	if r := durable[splitKey]; !r.Deleting || r.Sent == nil {
		t.Fatalf("durable record when the deletion was sent: %+v, want one written ahead of it (Deleting)", r)
	}
	again := restartFrom(t, src, durable, event.Deleted.Type())
	if again.ID != first.ID {
		t.Fatalf("the deletion was sent again as %s, first as %s", again.ID, first.ID)
	}
	sameEvent(t, "the deletion", first, again)
}

// The same for an added event (a provisional record) and a modification:
// sent again after a crash, each is the event the sink got first, with its
// time and recovered mark.
func TestChangeSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	for _, tc := range []struct {
		name, typ string
		setup     bool // the object exists before the run
		change    func(src *fakeSource)
	}{
		{"added", event.Added.Type(), false, func(src *fakeSource) {
			u := cm("a", "x", map[string]any{"v": "1"})
			u.SetUID("uid-x")
			src.apply(cmRes.GVR, u, false)
		}},
		{"modified", event.Modified.Type(), true, func(src *fakeSource) {
			u := cm("a", "x", map[string]any{"v": "2"})
			u.SetUID("uid-x")
			src.apply(cmRes.GVR, u, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(0)
			k := splitKey
			setup := func() {
				u := cm("a", "x", map[string]any{"v": "1"})
				u.SetUID("uid-x")
				src.apply(cmRes.GVR, u, false)
			}
			if !tc.setup {
				// Another object is delivered first, so that a durable
				// record exists before the change.
				k = state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "anchor"}
				setup = func() { src.apply(cmRes.GVR, cm("a", "anchor", nil), false) }
			}
			first, durable := crashPoint(t, src, k, setup, func() { tc.change(src) }, tc.typ)
			if r := durable[splitKey]; r.Sent == nil || r.Sent.ResourceVersion != first.ResourceVersion || !r.Sent.Time.Equal(first.Time) {
				t.Fatalf("durable record when the %s event was sent: %+v, want one written ahead of it", tc.name, r)
			}
			again := restartFrom(t, src, durable, tc.typ)
			sameEvent(t, "the "+tc.name+" event", first, again)
		})
	}
}

// One change carries one time on every sink, whenever each sends it: here
// the second sink fails its first sends and delivers later, after a
// backoff; both events carry the time the change was first observed.
func TestEventTimeIsTheSameOnEverySinkAndRetry(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}}, "rec", "slow")
	h := startHarness(t, cfg, harnessOpts{src: src})
	slow := h.sinks["slow"]
	slow.mu.Lock()
	slow.fail = func(call int, _ []*event.Event) error {
		if call <= 2 {
			time.Sleep(20 * time.Millisecond)
			return errors.New("not yet")
		}
		return nil
	}
	slow.mu.Unlock()
	h.waitReady()
	before := time.Now()
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	h.sinks["rec"].waitFor(t, "the added event on rec", func(e []*event.Event) bool { return len(e) == 1 })
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), false)
	h.sinks["rec"].waitFor(t, "the modified event on rec", func(e []*event.Event) bool { return len(e) == 2 })
	src.remove(cmRes.GVR, "a", "x", false)
	done := func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 }
	a := h.sinks["rec"].waitFor(t, "the deletion on rec", done)
	b := slow.waitFor(t, "the deletion on slow", done)
	for _, e := range a {
		if e.Time.Before(before.Add(-time.Millisecond)) {
			t.Errorf("%s: time %s before the change was made (%s)", e.ID, e.Time, before)
		}
	}
	sameTimes(t, "rec", a, "slow", b)
}

// sameTimes fails for an id whose time differs between two sinks' events,
// and when no id is on both (nothing compared).
func sameTimes(t *testing.T, an string, a []*event.Event, bn string, b []*event.Event) {
	t.Helper()
	times := map[string]time.Time{}
	for _, e := range a {
		times[e.ID] = e.Time
	}
	shared := 0
	for _, e := range b {
		at, ok := times[e.ID]
		if !ok {
			continue // merged on one sink only
		}
		shared++
		if !at.Equal(e.Time) {
			t.Errorf("%s: time %s on %s, %s on %s", e.ID, at.Format(time.RFC3339Nano), an, e.Time.Format(time.RFC3339Nano), bn)
		}
	}
	if shared == 0 {
		t.Fatalf("no event id on both sinks: %s%s, %s%s", an, summary(a), bn, summary(b))
	}
}

// After a restart, a sink that had not got a version yet sends it with
// the time the sink that had got it did: the checkpoint keeps when each
// delivered version was first observed.
func TestDeliveredTimeSurvivesRestartForLaggingSink(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
	first := time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC)
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	had := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Scope = cmScope("")
	rec.Sent = &state.Sent{ResourceVersion: u.GetResourceVersion(), Time: first}
	had.Put(k, rec)
	lagging := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}, "rec", "lagging")
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": had, "lagging": lagging}})
	evs := h.sinks["lagging"].waitFor(t, "the added event on the lagging sink", func(e []*event.Event) bool { return count(e, event.Added.Type()) == 1 })
	for _, e := range evs {
		if e.Type == event.Added.Type() && !e.Time.Equal(first) {
			t.Errorf("%s sent at %s by the lagging sink, first observed (and sent by the other) at %s", e.ID, e.Time, first)
		}
	}
}

// A checkpointed sink's delivered record keeps the time its event carried.
func TestDeliveredRecordKeepsItsEventTime(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	h.waitReady()
	src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	evs := h.sinks["rec"].waitFor(t, "the added event", func(e []*event.Event) bool { return len(e) == 1 })
	waitRecord(t, st, splitKey, evs[0].UID)
	r, _ := st.Get(splitKey)
	if r.Sent == nil || r.Sent.ResourceVersion != evs[0].ResourceVersion || !r.Sent.Time.Equal(evs[0].Time) {
		t.Errorf("delivered record Sent=%+v, want version %s at %s", r.Sent, evs[0].ResourceVersion, evs[0].Time)
	}
}

var _ sinks.Sink = (*recorder)(nil)

// restoredAsCheckpoint is r as exporter/checkpoint restores it
// (encodeRecord, decodeRecord): its state as its rule redacts it, read
// back from JSON and marked AtRest; neither the rule nor its redactor is
// kept.
func restoredAsCheckpoint(t *testing.T, r state.Record) state.Record {
	t.Helper()
	out := state.Record{UID: r.UID, ResourceVersion: r.ResourceVersion, Scope: r.Scope, Provisional: r.Provisional, Deleting: r.Deleting}
	if r.Sent != nil {
		s := *r.Sent
		s.Time = time.Unix(0, s.Time.UnixNano()).UTC()
		out.Sent = &s
	}
	if r.Object != nil {
		obj := r.Object.Object
		if r.Redact != nil {
			obj = r.Redact.Object(obj)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := utiljson.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out.Object, out.AtRest = &unstructured.Unstructured{Object: m}, true
	}
	return out
}

// crashAtWith is crashPoint for any config: it returns the first event of
// type typ the sink "rec" acknowledged after change ran, and the records
// durable when it got it. fail, when set, may fail a send after change
// ran (retryably, say), before it is looked at.
func crashAtWith(t *testing.T, cfg *config.Config, src *fakeSource, k state.Key, setup, change func(), typ string, fail func([]*event.Event) error) (*event.Event, map[state.Key]state.Record) {
	t.Helper()
	st := newSyncStore()
	var (
		mu      sync.Mutex
		watched bool
		first   *event.Event
		durable map[state.Key]state.Record
	)
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if watched && fail != nil {
			if err := fail(evs); err != nil {
				return err
			}
		}
		for _, e := range evs {
			if watched && first == nil && e.Type == typ {
				first = e
				st.mu.Lock()
				durable = make(map[state.Key]state.Record, len(st.durable))
				for dk, r := range st.durable {
					durable[dk] = r
				}
				st.mu.Unlock()
			}
		}
		return nil
	}}
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	setup()
	waitUntil(t, "the delivered state to be durable", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		r, ok := st.durable[k]
		return ok && !r.Provisional && !r.Deleting && (r.Sent == nil || r.Sent.ResourceVersion == r.ResourceVersion)
	})
	mu.Lock()
	watched = true
	mu.Unlock()
	change()
	waitUntil(t, "the sink to get a "+typ+" event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	})
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	return first, durable
}

// restartAtRestWith runs a new exporter whose sink "rec" restores durable
// as a checkpoint does (restoredAsCheckpoint), and returns the first event
// of type typ it sends.
func restartAtRestWith(t *testing.T, cfg *config.Config, src *fakeSource, durable map[state.Key]state.Record, typ string) *event.Event {
	t.Helper()
	return restartWith(t, cfg, src, durable, typ, func(r state.Record) state.Record { return restoredAsCheckpoint(t, r) })
}

// restartWith runs a new exporter of cfg over src whose sink "rec"
// restores durable, each record as restore makes it, and returns the first
// event of type typ it sends.
func restartWith(t *testing.T, cfg *config.Config, src *fakeSource, durable map[state.Key]state.Record, typ string, restore func(state.Record) state.Record) *event.Event {
	t.Helper()
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Second)}
	for k, r := range durable {
		st.Put(k, restore(r))
	}
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "a "+typ+" event after the restart", func(e []*event.Event) bool { return count(e, typ) > 0 })
	for _, e := range evs {
		if e.Type == typ {
			return e
		}
	}
	return nil
}

func secretObj(name, pw string, extra map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"namespace": "a", "name": name}, "data": map[string]any{"pw": pw}}}
	for k, v := range extra {
		u.Object[k] = v
	}
	u.SetUID(types.UID("uid-" + name))
	return u
}

func redactionKeyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A Secret's deletion sent again after a crash, from the record written
// ahead of it as the checkpoint keeps it (the final state as the rule
// redacts it), is the event the sink got first: same id, same bytes.
func TestSecretDeletionSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	secretChangeSentAgainAfterCrashIsTheSameEvent(t, "", event.Deleted.Type(), func(src *fakeSource) {
		src.remove(secretRes.GVR, "a", "x", false)
	})
}

// secretChangeSentAgainAfterCrashIsTheSameEvent runs a Secret through
// change (redacted as redact says), kills kubefeed once the sink got the
// change's event of type typ, and checks that the restart sends it again
// byte for byte.
func secretChangeSentAgainAfterCrashIsTheSameEvent(t *testing.T, redact, typ string, change func(src *fakeSource)) {
	t.Helper()
	cfg := newConfig([]config.Watch{{Resource: "secrets", Redact: redact}})
	if redact == "hash" {
		cfg.RedactionKeyFile = redactionKeyFile(t)
	}
	src := newFakeSource(0)
	k := state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "x"}
	first, durable := crashAtWith(t, cfg, src, k, func() { src.apply(secretRes.GVR, secretObj("x", "Zmlyc3Q=", nil), false) },
		func() { change(src) }, typ, nil)
	if r := durable[k]; r.Sent == nil || r.Sent.ResourceVersion != first.ResourceVersion {
		t.Fatalf("durable record when the %s event was sent: %+v, want one written ahead of it", typ, r)
	}
	again := restartAtRestWith(t, cfg, src, durable, typ)
	if again.ID != first.ID {
		t.Fatalf("sent again as %s, first as %s", again.ID, first.ID)
	}
	sameEvent(t, "the Secret's "+typ+" event", first, again)
}

// atRestStore is a checkpoint as exporter/checkpoint.Store keeps one: Sync
// writes what was Put as its rule redacts it (encodeRecord), and a record
// restored from an older format (legacy: its state unredacted) is written
// without its state until it is Put again.
type atRestStore struct {
	*state.MemoryStore
	mu     sync.Mutex
	legacy map[state.Key]bool
	// rest is what each key's record holds at rest after the last Sync.
	rest map[state.Key][]byte
}

func newAtRestStore() *atRestStore {
	return &atRestStore{MemoryStore: state.NewMemoryStore(), legacy: map[state.Key]bool{}, rest: map[state.Key][]byte{}}
}

func (s *atRestStore) Restored() (time.Time, bool) { return time.Now().Add(-time.Hour), true }

func (s *atRestStore) load(k state.Key, r state.Record, legacy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.MemoryStore.Put(k, r)
	s.legacy[k] = legacy
}

func (s *atRestStore) Put(k state.Key, r state.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// As checkpoint.Store.Put: a legacy state Put again unchanged is still
	// written without it.
	if old, ok := s.MemoryStore.Get(k); !ok || old.Object != r.Object {
		delete(s.legacy, k)
	}
	s.MemoryStore.Put(k, r)
}

func (s *atRestStore) Sync(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rest = map[state.Key][]byte{}
	s.Range(func(k state.Key, r state.Record) bool {
		var state any
		if r.Object != nil && !s.legacy[k] {
			state = r.Redact.Object(r.Object.Object)
		}
		b, _ := json.Marshal(state)
		s.rest[k] = b
		return true
	})
	return nil
}

func (s *atRestStore) holds(v string) []state.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []state.Key
	for k, b := range s.rest {
		if bytes.Contains(b, []byte(v)) {
			ks = append(ks, k)
		}
	}
	return ks
}

// A record restored from a checkpoint of the older format holds its
// Secret unredacted in memory (for this run's diffs) and is written back
// without its state until it is Put with its rule's redaction. The record
// written ahead of the Secret's modification must not bring the
// unredacted state back to rest (SPEC: nothing redacted rests anywhere):
// here a live modification, after the restore compared the Secret.
func TestRecordWrittenAheadOfModificationRestsRedacted(t *testing.T) {
	recordWrittenAheadOfModificationRestsRedacted(t, false)
}

func recordWrittenAheadOfModificationRestsRedacted(t *testing.T, whileDown bool) {
	src := newFakeSource(0)
	u := src.apply(secretRes.GVR, secretObj("x", "Zmlyc3Q=", nil), true)
	k := state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "x"}
	st := newAtRestStore()
	rec := recordOf(u)
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	rec.AtRest = true // as checkpoint.decodeRecord restores a record of format 1
	st.load(k, rec, true)
	st.load(sentinelKey(scopeID{GVR: secretRes.GVR}), state.Record{Scope: rec.Scope}, false)
	var atSend []state.Key
	var once sync.Once
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		for _, e := range evs {
			if e.Type == event.Modified.Type() {
				once.Do(func() { atSend = st.holds("Zmlyc3Q=") })
			}
		}
		return nil
	}}
	if whileDown {
		src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", nil), true)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	if !whileDown {
		src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", nil), false)
	}
	sink.waitFor(t, "the modification", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
	if len(atSend) > 0 {
		t.Errorf("when the modification was sent, the unredacted Secret rested in the checkpoint record of %v", atSend)
	}
}

// aheadOf reports whether r, durable when e was sent, is the record
// written ahead of e: it names e's version and time (and, for added and
// deleted, is marked Provisional or Deleting).
func aheadOf(r state.Record, ok bool, e *event.Event) bool {
	if !ok || r.UID != e.UID || r.Sent == nil || r.Sent.ResourceVersion != e.ResourceVersion || !r.Sent.Time.Equal(e.Time) ||
		r.Sent.Recovered != e.Data.(*event.ChangeData).Recovered {
		return false
	}
	switch e.Type {
	case event.Added.Type():
		return r.Provisional && r.ResourceVersion == e.ResourceVersion
	case event.Deleted.Type():
		return r.Deleting && r.ResourceVersion == e.ResourceVersion
	}
	return !r.Provisional && !r.Deleting
}

// A change whose object has keys with '/' and '~', null values and
// integers beyond 2^53, sent again after a crash from the state the
// checkpoint keeps, is the event the sink got first: modified (with the
// old object the rule asks for) and deleted.
func TestEscapedKeysBigIntegersAndNullsSentAgainAfterCrashAreTheSameEvent(t *testing.T) {
	obj := func(data map[string]any) *unstructured.Unstructured {
		u := cm("a", "x", nil)
		u.Object["spec"] = data
		u.SetUID("uid-x")
		return u
	}
	for _, typ := range []string{event.Modified.Type(), event.Deleted.Type()} {
		t.Run(typ, func(t *testing.T) {
			cfg := newConfig([]config.Watch{{Resource: "configmaps", OldObject: true}})
			src := newFakeSource(0)
			setup := func() {
				src.apply(cmRes.GVR, obj(map[string]any{"a/b": int64(9007199254740993), "a~b": nil, "a~1b": "x", "n": map[string]any{"/": int64(-9007199254740993)}}), false)
			}
			change := func() {
				src.apply(cmRes.GVR, obj(map[string]any{"a/b": nil, "a~b": int64(9007199254740995), "a~1b": "y", "n": map[string]any{"/": int64(9223372036854775807), "~": 1.5}}), false)
			}
			if typ == event.Deleted.Type() {
				prev := change
				change = func() { prev(); src.remove(cmRes.GVR, "a", "x", false) }
			}
			first, durable := crashAtWith(t, cfg, src, splitKey, setup, change, typ, nil)
			again := restartAtRestWith(t, cfg, src, durable, typ)
			if again.ID != first.ID {
				t.Fatalf("sent again as %s, first as %s", again.ID, first.ID)
			}
			sameEvent(t, "the "+typ+" event", first, again)
		})
	}
}

// A deletion that follows a modification whose send failed retryably
// (the modification never acknowledged) is written ahead and, sent again
// after a crash that followed its ack, is the same event.
func TestDeletionAfterFailedSendSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	src := newFakeSource(0)
	var deleted atomic.Bool
	fail := func(evs []*event.Event) error {
		for _, e := range evs {
			if e.Type == event.Modified.Type() && !deleted.Load() {
				deleted.Store(true)
				go src.remove(cmRes.GVR, "a", "x", false)
				return errors.New("unavailable")
			}
		}
		return nil
	}
	first, durable := crashAtWith(t, cfg, src, splitKey, func() { src.apply(cmRes.GVR, cmUID("one"), false) }, func() {
		u := cmUID("one")
		u.Object["data"] = map[string]any{"v": "2"}
		src.apply(cmRes.GVR, u, false)
	}, event.Deleted.Type(), fail)
	if r := durable[splitKey]; !aheadOf(r, true, first) {
		t.Fatalf("durable record when %s was sent: %+v", first.ID, r)
	}
	again := restartAtRestWith(t, cfg, src, durable, event.Deleted.Type())
	if again.ID != first.ID {
		t.Fatalf("sent again as %s, first as %s", again.ID, first.ID)
	}
	sameEvent(t, "the deletion", first, again)
}

// A name deleted and created again (another uid) while its key waited is
// sent in two steps; killed after the sink acknowledged the first (the
// old incarnation's deletion), kubefeed sends that deletion again as it
// was, then the new incarnation.
func TestReplacedIncarnationDeletionSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	src := newFakeSource(0)
	first, durable := crashAtWith(t, cfg, src, splitKey, func() { src.apply(cmRes.GVR, cmUID("one"), false) }, func() {
		src.remove(cmRes.GVR, "a", "x", false)
		src.apply(cmRes.GVR, cmUID("two"), false)
	}, event.Deleted.Type(), nil)
	if first.UID != "one" {
		t.Fatalf("first deletion %s", first.ID)
	}
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Second)}
	for k, r := range durable {
		st.Put(k, restoredAsCheckpoint(t, r))
	}
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the new incarnation", func(e []*event.Event) bool { return count(e, event.Added.Type()) > 0 })
	var got []string
	for _, e := range evs {
		if e.Type == event.TypeGap {
			continue
		}
		got = append(got, e.UID+" "+e.Type[len(event.TypePrefix):])
		if e.Type == event.Deleted.Type() {
			sameEvent(t, "the old incarnation's deletion", first, e)
		}
	}
	if strings.Join(got, ",") != "one deleted,two added" {
		t.Errorf("after the restart: %v, want the old incarnation's deletion, then the new one", got)
	}
}

// An object that left a label-selected scope (its deletion written ahead,
// sent, acknowledged; kubefeed killed before the record went) and came
// back with the same uid while kubefeed was down is added again after the
// restart, at its new version; its deletion is not sent again.
func TestObjectBackInScopeAfterCrashIsAddedAgain(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "configmaps", LabelSelector: "app=web"}})
	src := newFakeSource(0)
	labelled := func(app string) *unstructured.Unstructured {
		u := cmUID("one")
		u.SetLabels(map[string]string{"app": app})
		return u
	}
	leave := func() {
		// The API server tells a label-selected watch that the object
		// left it with a DELETED event carrying its new state.
		u := src.apply(cmRes.GVR, labelled("db"), true)
		src.mu.Lock()
		defer src.mu.Unlock()
		src.send(cmRes.GVR, watch.Event{Type: watch.Deleted, Object: u.DeepCopy()}, labelled("web"))
	}
	first, durable := crashAtWith(t, cfg, src, splitKey, func() { src.apply(cmRes.GVR, labelled("web"), false) },
		leave, event.Deleted.Type(), nil)
	if r := durable[splitKey]; !aheadOf(r, true, first) {
		t.Fatalf("durable record when %s was sent: %+v", first.ID, r)
	}
	back := src.apply(cmRes.GVR, labelled("web"), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Second)}
	for k, r := range durable {
		st.Put(k, restoredAsCheckpoint(t, r))
	}
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "the object again", func(e []*event.Event) bool { return count(e, event.Added.Type()) > 0 })
	evs = quiesce(t, h, "rec")
	var got []string
	for _, e := range evs {
		if e.Type != event.TypeGap {
			got = append(got, e.Type[len(event.TypePrefix):]+" "+e.ResourceVersion)
		}
	}
	if want := "added " + back.GetResourceVersion(); strings.Join(got, ",") != want {
		t.Errorf("after the restart: %v, want [%s]", got, want)
	}
	if r, ok := st.Get(splitKey); !ok || r.Deleting || r.Provisional || r.ResourceVersion != back.GetResourceVersion() {
		t.Errorf("record after the restart: %+v (%v)", r, ok)
	}
}

// A deletion the rule does not send (events without DELETED) writes no
// record ahead: nothing is sent, and the record goes.
func TestDeletionFilteredOutWritesNothingAhead(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	var mu sync.Mutex
	var deleting []state.Record
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", Events: []string{config.EventAdded, config.EventModified}}}),
		harnessOpts{src: src, stores: map[string]state.Store{"rec": &recordingPuts{syncStore: st, put: func(r state.Record) {
			if r.Deleting {
				mu.Lock()
				deleting = append(deleting, r)
				mu.Unlock()
			}
		}}}})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("one"), false)
	h.sinks["rec"].waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	waitRecord(t, st, splitKey, "one")
	src.remove(cmRes.GVR, "a", "x", false)
	waitUntil(t, "the record to go", func() bool { _, ok := st.Get(splitKey); return !ok })
	evs := quiesce(t, h, "rec")
	if len(evs) != 1 {
		t.Errorf("events:%s, want the added one only", summary(evs))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleting) > 0 {
		t.Errorf("records written ahead of a deletion that is not sent: %+v", deleting)
	}
}

// recordingPuts is a syncStore that reports every Put.
type recordingPuts struct {
	*syncStore
	put func(state.Record)
}

func (s *recordingPuts) Put(k state.Key, r state.Record) {
	s.put(r)
	s.syncStore.Put(k, r)
}

// A Secret's modification (marker or hash) and deletion (hash) sent again
// after a crash are the events the sink got first, byte for byte.
func TestSecretChangeSentAgainAfterCrashIsTheSameEvent(t *testing.T) {
	for _, tc := range []struct {
		name, redact, typ string
		change            func(src *fakeSource)
	}{
		{"modified value, marker", "", event.Modified.Type(), func(src *fakeSource) {
			src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", nil), false)
		}},
		{"modified value and type, marker", "", event.Modified.Type(), func(src *fakeSource) {
			src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", map[string]any{"type": "Opaque"}), false)
		}},
		{"modified value, hash", "hash", event.Modified.Type(), func(src *fakeSource) {
			src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", nil), false)
		}},
		{"deleted, hash", "hash", event.Deleted.Type(), func(src *fakeSource) {
			src.remove(secretRes.GVR, "a", "x", false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { secretChangeSentAgainAfterCrashIsTheSameEvent(t, tc.redact, tc.typ, tc.change) })
	}
}

// The same as TestRecordWrittenAheadOfModificationRestsRedacted, the
// Secret having changed while kubefeed was down (an upgrade from a
// checkpoint of format 1).
func TestRecordWrittenAheadOfModificationAfterRestartRestsRedacted(t *testing.T) {
	recordWrittenAheadOfModificationRestsRedacted(t, true)
}

// After a restart, a sink that had not got a version yet sends it with
// the time the sink that had got it did, also when the key is queued more
// than a few seconds after the restore: its resource appears late (a CRD
// installed after kubefeed started), or its first lists fail for a while.
func TestDeliveredTimeSurvivesRestartForLaggingSinkQueuedLate(t *testing.T) {
	for _, tc := range []struct {
		name string
		// hold keeps the scope from listing until the returned release.
		hold func(src *fakeSource, res *fakeResolver) (release func())
	}{
		{"late scope", func(_ *fakeSource, res *fakeResolver) func() {
			res.missing["configmaps"] = true
			return func() { res.appear("configmaps") }
		}},
		{"slow list", func(src *fakeSource, _ *fakeResolver) func() {
			src.mu.Lock()
			src.listErr[cmRes.GVR] = errors.New("etcdserver: request timed out")
			src.mu.Unlock()
			return func() {
				src.mu.Lock()
				delete(src.listErr, cmRes.GVR)
				src.mu.Unlock()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(0)
			u0 := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), true)
			u := src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)
			first := time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC)
			k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
			had := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
			rec := recordOf(u)
			rec.Scope = cmScope("")
			rec.Sent = &state.Sent{ResourceVersion: u.GetResourceVersion(), Time: first}
			had.Put(k, rec)
			lagging := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
			old := recordOf(u0)
			old.Scope = cmScope("")
			lagging.Put(k, old)
			resolver := newResolver()
			release := tc.hold(src, resolver)
			cfg := newConfig([]config.Watch{{Resource: "configmaps"}}, "rec", "lagging")
			h := startHarness(t, cfg, harnessOpts{src: src, resolver: resolver, stores: map[string]state.Store{"rec": had, "lagging": lagging}})
			time.Sleep(observationsPruneEvery + 2*time.Second)
			release()
			evs := h.sinks["lagging"].waitFor(t, "the modified event on the lagging sink", func(e []*event.Event) bool { return count(e, event.Modified.Type()) == 1 })
			for _, e := range evs {
				if e.Type == event.Modified.Type() && !e.Time.Equal(first) {
					t.Errorf("%s sent at %s by the lagging sink, first observed (and sent by the other) at %s", e.ID, e.Time, first)
				}
			}
		})
	}
}

// After a restart with redact: hash, a recovered modification's patch
// applies to the consumer's object: hashed values are not hashed again.
func TestHashedSecretPatchAfterRestartAppliesToItsObject(t *testing.T) {
	cfg := newConfig([]config.Watch{{Resource: "secrets", Redact: "hash"}})
	cfg.RedactionKeyFile = redactionKeyFile(t)
	src := newFakeSource(0)
	u := src.apply(secretRes.GVR, secretObj("x", "Zmlyc3Q=", nil), true)
	rules, err := plan.CompileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := recordOf(u)
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	rec.Redact = rules[0].Redactor(secretRes)
	src.apply(secretRes.GVR, secretObj("x", "c2Vjb25k", nil), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Second)}
	st.Put(state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "x"}, restoredAsCheckpoint(t, rec))
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	evs := h.sinks["rec"].waitFor(t, "modified", func(e []*event.Event) bool { return count(e, event.Modified.Type()) > 0 })
	for _, e := range evs {
		if e.Type == event.Modified.Type() {
			b, _ := event.Marshal(e)
			t.Logf("%s", b)
			d := e.Data.(*event.ChangeData)
			if d.Patch[0].Value != d.Object["data"].(map[string]any)["pw"] {
				t.Errorf("patch value %v, object value %v", d.Patch[0].Value, d.Object["data"].(map[string]any)["pw"])
			}
		}
	}
}

// Two rules on one resource with different label selectors (two scopes,
// two informers) routed to different sinks: an object both select shows
// each of its changes with one time on both sinks.
func TestEventTimeIsTheSameOnSinksOfOverlappingScopes(t *testing.T) {
	overlappingScopesShowOneTime(t, false)
}

func overlappingScopesShowOneTime(t *testing.T, burst bool) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{
		{Resource: "configmaps", LabelSelector: "app=web", Sinks: []string{"one"}},
		{Resource: "configmaps", LabelSelector: "tier=fe", Sinks: []string{"two"}},
	}, "one", "two")
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	obj := func(v string) *unstructured.Unstructured {
		u := cm("a", "x", map[string]any{"v": v})
		u.SetLabels(map[string]string{"app": "web", "tier": "fe"})
		return u
	}
	both := func(what string, cond func([]*event.Event) bool) ([]*event.Event, []*event.Event) {
		return h.sinks["one"].waitFor(t, what+" on one", cond), h.sinks["two"].waitFor(t, what+" on two", cond)
	}
	n := 5
	if burst {
		n = 20
	}
	for i := 0; i < n; i++ {
		u := src.apply(cmRes.GVR, obj(strconv.Itoa(i)), false)
		if !burst || i == n-1 {
			// After a burst, the last version reaches both sinks: one id
			// both carry, whatever each merged before it.
			rv := u.GetResourceVersion()
			both("version "+rv, func(e []*event.Event) bool { return len(e) > 0 && e[len(e)-1].ResourceVersion == rv })
		}
	}
	src.remove(cmRes.GVR, "a", "x", false)
	var a, b []*event.Event
	if burst {
		// A sink may merge the whole life of the object into nothing.
		idle := func() bool {
			for _, r := range h.ex.runners {
				if r.pending.len() > 0 || r.queue.Len() > 0 || r.lookup(state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}).Obj != nil {
					return false
				}
			}
			return true
		}
		waitUntil(t, "both sinks idle", idle)
		time.Sleep(100 * time.Millisecond)
		waitUntil(t, "both sinks idle", idle)
		a, b = h.sinks["one"].got(), h.sinks["two"].got()
	} else {
		a, b = both("the deletion", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	}
	sameTimes(t, "one", a, "two", b)
}

// The same under a burst of changes (more versions than observationsPerKey
// between the two informers).
func TestEventTimeIsTheSameOnSinksOfOverlappingScopesUnderBurst(t *testing.T) {
	overlappingScopesShowOneTime(t, true)
}

// syncStore is a MemoryStore with group commit that records what was
// durable when each send began.
type syncStore struct {
	*state.MemoryStore
	mu      sync.Mutex
	durable map[state.Key]state.Record
}

func (s *syncStore) Sync(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Range(func(k state.Key, r state.Record) bool { s.durable[k] = r; return true })
	return nil
}

// With a checkpoint, an object new to the sink has a durable (provisional)
// record before its added event is sent, and a final one after the ack.
func TestProvisionalRecordBeforeSend(t *testing.T) {
	src := newFakeSource(0)
	st := &syncStore{MemoryStore: state.NewMemoryStore(), durable: map[state.Key]state.Record{}}
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	var atSend *state.Record
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
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
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
	st := &syncStore{MemoryStore: state.NewMemoryStore(), durable: map[state.Key]state.Record{}}
	k := state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}
	type sent struct {
		types   []string
		durable *state.Record
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
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
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

// A deletion is rendered by the rule that delivered the object: here rule
// 1 (redacted) delivered the Secret; rule 0 (redact: none, another label)
// covers its namespace but must not render its final state in clear.
func TestDeletionRenderedByDeliveringRule(t *testing.T) {
	src := newFakeSource(0)
	cfg := newConfig([]config.Watch{
		{Resource: "secrets", Namespaces: []string{"a"}, LabelSelector: "team=x", Redact: "none"},
		{Resource: "secrets"},
	})
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	s := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"namespace": "a", "name": "pw"}, "data": map[string]any{"password": "c2VjcmV0"}}}
	src.apply(secretRes.GVR, s, false)
	h.sinks["rec"].waitFor(t, "added", func(e []*event.Event) bool { return len(e) == 1 })
	src.remove(secretRes.GVR, "a", "pw", false)
	evs := h.sinks["rec"].waitFor(t, "deleted", func(e []*event.Event) bool { return len(e) == 2 })
	for _, e := range evs {
		data := e.Data.(*event.ChangeData).Object["data"].(map[string]any)
		if data["password"] == "c2VjcmV0" {
			t.Errorf("%s event carries the secret in clear", e.Type)
		}
	}
}

// The checkpoint keeps no rule, and plan puts an unchanged restored
// object again with the first rule that selects it now. A Secret
// delivered by the redacting rule 1 (rule 0: redact none, a label
// selector the Secret does not match, though scope.covers looks only at
// the namespace) and deleted after the restart is rendered by rule 1: the
// deleted event carries no value of the Secret in clear.
func TestDeletionAfterRestartRenderedByDeliveringRule(t *testing.T) {
	src := newFakeSource(0)
	u := src.apply(secretRes.GVR, pwSecret(nil), true)
	st := &restoredStore{MemoryStore: state.NewMemoryStore(), at: time.Now().Add(-time.Hour)}
	rec := recordOf(u)
	rec.Object = &unstructured.Unstructured{Object: filters.NewRedactor(filters.SecretPaths, nil).Object(u.Object)}
	rec.Scope = scopeID{GVR: secretRes.GVR}.String()
	st.Put(state.Key{GVR: secretRes.GVR, Namespace: "a", Name: "pw"}, rec)
	cfg := newConfig([]config.Watch{
		{Resource: "secrets", Namespaces: []string{"a"}, LabelSelector: "team=x", Redact: "none"},
		{Resource: "secrets"},
	})
	h := startHarness(t, cfg, harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
	h.waitReady()
	deadline := time.Now().Add(10 * time.Second)
	for h.ex.runners[0].pending.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	src.remove(secretRes.GVR, "a", "pw", false)
	evs := h.sinks["rec"].waitFor(t, "deleted", func(e []*event.Event) bool { return count(e, event.Deleted.Type()) == 1 })
	for _, e := range evs {
		b, _ := json.Marshal(e.Data)
		if strings.Contains(string(b), pwSecretValue) {
			t.Errorf("%s event carries the Secret's value in clear: %s", e.Type, b)
		}
	}
}

// After a restart, a Secret that did not change while kubefeed was down
// is put again by plan with the rule that selects it now and that rule's
// redactor (the restored record carries no rule), so the checkpoint's
// next flush writes it redacted (encodeRecord redacts with r.Redact
// only): nothing redacted rests anywhere.
func TestRestoredUnchangedSecretIsStoredRedacted(t *testing.T) {
	src := newFakeSource(0)
	st, k := restoredSecret(t, src)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "secrets"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}})
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
	if strings.Contains(string(b), pwSecretValue) {
		t.Errorf("the checkpoint would store the Secret's value in clear (rule %d, redact %v): %s", rec.Rule, rec.Redact != nil, b)
	}
}

// appendRules hands back a table's own slice only when all its rules
// route to the sink in config order, and never writes into that slice
// when another scope's rules are merged after it.
func TestAppendRulesLeavesTheTableAlone(t *testing.T) {
	r1 := &plan.Rule{Index: 0, Sinks: []string{"s"}}
	r2 := &plan.Rule{Index: 1, Sinks: []string{"other"}}
	r3 := &plan.Rule{Index: 2, Sinks: []string{"s"}}
	r4 := &plan.Rule{Index: 3, Sinks: []string{"s"}}
	table := make([]*plan.Rule, 0, 8) // room to append into: a merge must not use it
	table = append(table, r1, r4)
	got := appendRules(nil, table, "s")
	if len(got) != 2 || got[0] != r1 || got[1] != r4 {
		t.Fatalf("one scope: %v", got)
	}
	got = appendRules(got, []*plan.Rule{r2, r3}, "s") // r3 goes between r1 and r4
	if len(got) != 3 || got[0] != r1 || got[1] != r3 || got[2] != r4 {
		t.Fatalf("merged: %v", got)
	}
	if table[0] != r1 || table[1] != r4 || table[:3][2] != nil {
		t.Fatalf("the table was written into: %v", table[:3])
	}
	// Rules that do not all route here are filtered, as before.
	if got := appendRules(nil, []*plan.Rule{r1, r2, r3}, "s"); len(got) != 2 || got[0] != r1 || got[1] != r3 {
		t.Fatalf("filtered: %v", got)
	}
	// Out of config order: sorted, as before.
	if got := appendRules(nil, []*plan.Rule{r4, r1}, "s"); len(got) != 2 || got[0] != r1 || got[1] != r4 {
		t.Fatalf("sorted: %v", got)
	}
	// A rule already there is not added twice.
	if got := appendRules([]*plan.Rule{r1, r4}, []*plan.Rule{r1}, "s"); len(got) != 2 {
		t.Fatalf("duplicate: %v", got)
	}
}

// fullCopy copies s up to its capacity, to see writes beyond its length.
func fullCopy(s []*plan.Rule) []*plan.Rule { return append([]*plan.Rule(nil), s[:cap(s)]...) }

func sameRules(a, b []*plan.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ruleList(rs []*plan.Rule) string {
	s := "["
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		if r == nil {
			s += "nil"
			continue
		}
		s += fmt.Sprintf("%d%v@%p", r.Index, r.Sinks, r)
	}
	return s + "]"
}

// On random rule pools and tables (indexes shared by distinct rules,
// sinks routed or not, duplicates, tables out of config order, empty and
// nil tables, spare capacity), chains of appendRules as lookup makes them
// (one to four scopes) give the rules testdata/append_rules.golden holds,
// in its order (what appendRules gave before it could hand back a table's
// own slice), never write into any table (up to its capacity), and an
// append to the result never writes into a table.
func TestAppendRulesAsGolden(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 6))
	sinkNames := []string{"s", "t"}
	fast := 0
	g := golden.New("appendRules chains (TestAppendRulesAsGolden; go test -run TestAppendRulesAsGolden -update rewrites it):\n"+
		"the pool (position:index[sinks]), the tables (pool positions), and per sink the rules appendRules gives (pool positions).", 150, 1, 1000)
	g.StartSection("iterations")
	for iter := 0; iter < 20000; iter++ {
		pool := make([]*plan.Rule, 1+rng.IntN(7))
		for i := range pool {
			rl := &plan.Rule{Index: i}
			if rng.IntN(5) == 0 && i > 0 {
				rl.Index = pool[rng.IntN(i)].Index // two rules of one index
			}
			switch rng.IntN(4) {
			case 0:
				rl.Sinks = []string{"s"}
			case 1:
				rl.Sinks = []string{"t"}
			case 2:
				rl.Sinks = []string{"t", "s"}
			}
			pool[i] = rl
		}
		tables := make([][]*plan.Rule, 1+rng.IntN(4))
		for i := range tables {
			n := rng.IntN(6)
			if n == 0 && rng.IntN(2) == 0 {
				continue // nil table
			}
			tb := make([]*plan.Rule, 0, n+rng.IntN(4))
			switch rng.IntN(3) {
			case 0: // config order, as joinScopes at start builds them
				perm := rng.Perm(len(pool))[:min(n, len(pool))]
				slices.Sort(perm)
				for _, j := range perm {
					tb = append(tb, pool[j])
				}
			default: // any order, duplicates allowed
				for j := 0; j < n; j++ {
					tb = append(tb, pool[rng.IntN(len(pool))])
				}
			}
			tables[i] = tb
		}
		before := make([][]*plan.Rule, len(tables))
		for i, tb := range tables {
			before[i] = fullCopy(tb)
		}
		pos := map[*plan.Rule]int{}
		var rendering strings.Builder
		fmt.Fprintf(&rendering, "%d pool=[", iter)
		for i, rl := range pool {
			pos[rl] = i
			if i > 0 {
				rendering.WriteByte(' ')
			}
			fmt.Fprintf(&rendering, "%d:%d%v", i, rl.Index, rl.Sinks)
		}
		positions := func(rs []*plan.Rule) string {
			if rs == nil {
				return "nil"
			}
			var s []string
			for _, rl := range rs {
				if p, ok := pos[rl]; ok {
					s = append(s, strconv.Itoa(p))
				} else {
					s = append(s, "?")
				}
			}
			return "[" + strings.Join(s, " ") + "]"
		}
		rendering.WriteString("] tables=")
		for i, tb := range tables {
			if i > 0 {
				rendering.WriteByte(' ')
			}
			rendering.WriteString(positions(tb))
		}
		for _, sink := range sinkNames {
			var got []*plan.Rule
			for _, tb := range tables {
				if len(got) == 0 && allRouteInOrder(tb, sink) && len(tb) > 0 {
					fast++
				}
				got = appendRules(got, tb, sink)
			}
			fmt.Fprintf(&rendering, " %s=%s", sink, positions(got))
			// What a caller may do with cur.rules: append to it. (Not
			// append to a prefix of it, sort it, or assign its elements:
			// those write within its length, which no cap can prevent;
			// no caller does.)
			_ = append(got, &plan.Rule{Index: 99})
			for i, tb := range tables {
				if !sameRules(fullCopy(tb), before[i]) {
					t.Fatalf("iter %d sink %s: table %d written: %s, was %s", iter, sink, i, ruleList(fullCopy(tb)), ruleList(before[i]))
				}
			}
		}
		rendering.WriteByte('\n')
		g.Add(rendering.String())
	}
	g.Check(t, "append_rules")
	if fast == 0 {
		t.Fatal("the fast path was never taken")
	}
}

// The two-step send of a replaced incarnation to a checkpointed sink:
// order, recovered marks, retractions, failures of either step, and the
// key changing between the steps.

// sendLog records each Send call to a recorder: "type uid[ R]" per event
// (R: recovered; gap markers as "gap"), and the durable record of the
// watched key when the call began.
type sendLog struct {
	mu    sync.Mutex
	calls [][]string
	dur   []*state.Record
}

func (l *sendLog) hook(st *syncStore, k state.Key, then func(call int, evs []string) error) func(int, []*event.Event) error {
	return func(_ int, evs []*event.Event) error {
		var s []string
		for _, e := range evs {
			if e.Type == event.TypeGap {
				s = append(s, "gap")
				continue
			}
			d := e.Type[len(event.TypePrefix):] + " " + e.UID
			if e.Data.(*event.ChangeData).Recovered {
				d += " R"
			}
			s = append(s, d)
		}
		var dur *state.Record
		if st != nil {
			st.mu.Lock()
			if r, ok := st.durable[k]; ok {
				dur = &r
			}
			st.mu.Unlock()
		}
		l.mu.Lock()
		l.calls = append(l.calls, s)
		l.dur = append(l.dur, dur)
		n := len(l.calls)
		l.mu.Unlock()
		if then != nil {
			return then(n, s)
		}
		return nil
	}
}

func (l *sendLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, c := range l.calls {
		fmt.Fprintf(&b, " %d:%v", i+1, c)
	}
	return b.String()
}

// find returns the index of the first call whose events are exactly want.
func (l *sendLog) find(want ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range l.calls {
		if strings.Join(c, ",") == strings.Join(want, ",") {
			return i
		}
	}
	return -1
}

func newSyncStore() *syncStore {
	return &syncStore{MemoryStore: state.NewMemoryStore(), durable: map[state.Key]state.Record{}}
}

var splitKey = state.Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}

// cmUID is cm a/x with a given uid.
func cmUID(uid string) *unstructured.Unstructured {
	u := cm("a", "x", map[string]any{"incarnation": uid})
	u.SetUID(types.UID(uid))
	return u
}

// waitRecord waits until the sink's store holds want (uid, final) for k.
func waitRecord(t *testing.T, st state.Store, k state.Key, uid string) {
	t.Helper()
	waitUntil(t, "the record of "+uid, func() bool {
		r, ok := st.Get(k)
		return ok && r.UID == uid && !r.Provisional
	})
}

// waitInformer waits until the informers hold uid for k.
func waitInformer(t *testing.T, h *harness, k state.Key, uid string) {
	t.Helper()
	waitUntil(t, "the informer to hold "+uid, func() bool {
		c := h.ex.runners[0].lookup(k)
		return c.Obj != nil && string(c.Obj.GetUID()) == uid
	})
}

// A uid change coalesced with a relist: one gap marker, then the old
// incarnation's deletion and the new one's added event, each sent alone,
// both recovered, in that order.
func TestReplacedIncarnationCoalescedWithRelistGap(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	var log sendLog
	sink := &recorder{fail: log.hook(st, splitKey, nil)}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("uid-1"), false)
	waitRecord(t, st, splitKey, "uid-1")
	src.remove(cmRes.GVR, "a", "x", true)
	src.apply(cmRes.GVR, cmUID("uid-2"), true)
	waitWatching(t, src, cmRes.GVR)
	src.expire(cmRes.GVR)
	waitRecord(t, st, splitKey, "uid-2")
	quiesce(t, h, "rec")
	want := [][]string{{"added uid-1"}, {"gap"}, {"deleted uid-1 R"}, {"added uid-2 R"}}
	if got := log.String(); got != fmt.Sprint(sendLogOf(want)) {
		t.Fatalf("sends%s, want%s", got, sendLogOf(want))
	}
	if d := log.dur[3]; d == nil || d.UID != "uid-2" || !d.Provisional {
		t.Fatalf("durable record when uid-2 was sent: %+v, want its provisional one", d)
	}
	if d := log.dur[2]; d == nil || d.UID != "uid-1" {
		t.Fatalf("durable record when uid-1's deletion was sent: %+v, want uid-1's", d)
	}
}

func sendLogOf(calls [][]string) string {
	var l sendLog
	l.calls = calls
	return l.String()
}

// The added event of an incarnation fails (the sink may hold it), and the
// object is replaced before the retry: the unacknowledged incarnation is
// retracted on its own, then the new one is sent after its provisional
// record is durable.
func TestReplacedIncarnationRetractsUnacknowledgedOne(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	var log sendLog
	var h *harness
	var once sync.Once
	sink := &recorder{}
	sink.fail = log.hook(st, splitKey, func(_ int, evs []string) error {
		var err error
		once.Do(func() {
			// Replaced while the add is on its way, and lost.
			src.remove(cmRes.GVR, "a", "x", false)
			src.apply(cmRes.GVR, cmUID("uid-2"), false)
			waitInformer(t, h, splitKey, "uid-2")
			err = errors.New("ack lost")
		})
		return err
	})
	h = startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("uid-1"), false)
	waitRecord(t, st, splitKey, "uid-2")
	quiesce(t, h, "rec")
	want := sendLogOf([][]string{{"added uid-1"}, {"deleted uid-1"}, {"added uid-2"}})
	if got := log.String(); got != want {
		t.Fatalf("sends%s, want%s", got, want)
	}
	if d := log.dur[2]; d == nil || d.UID != "uid-2" || !d.Provisional {
		t.Fatalf("durable record when uid-2 was sent: %+v, want its provisional one", d)
	}
}

// The deletion step fails, retryably and then permanently: it is retried
// once, dropped, and the new incarnation still follows, alone.
func TestReplacedIncarnationDeletionStepFails(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	var log sendLog
	fails := 0
	sink := &recorder{}
	sink.fail = log.hook(st, splitKey, func(_ int, evs []string) error {
		if len(evs) == 1 && strings.HasPrefix(evs[0], "deleted uid-1") {
			fails++
			if fails == 1 {
				return errors.New("unavailable")
			}
			return sinks.Permanent(errors.New("rejected"))
		}
		return nil
	})
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("uid-1"), false)
	waitRecord(t, st, splitKey, "uid-1")
	src.remove(cmRes.GVR, "a", "x", true)
	src.apply(cmRes.GVR, cmUID("uid-2"), true)
	waitWatching(t, src, cmRes.GVR)
	src.expire(cmRes.GVR)
	waitRecord(t, st, splitKey, "uid-2")
	quiesce(t, h, "rec")
	want := sendLogOf([][]string{{"added uid-1"}, {"gap"}, {"deleted uid-1 R"}, {"deleted uid-1 R"}, {"added uid-2 R"}})
	if got := log.String(); got != want {
		t.Fatalf("sends%s, want%s", got, want)
	}
}

// The key changes again between the two steps: replaced by a third
// incarnation (only that one is added), or deleted (nothing follows and
// the key is forgotten).
func TestReplacedIncarnationKeyChangesBetweenSteps(t *testing.T) {
	for _, then := range []string{"replaced", "deleted"} {
		t.Run(then, func(t *testing.T) {
			src := newFakeSource(0)
			st := newSyncStore()
			var log sendLog
			var h *harness
			sink := &recorder{}
			sink.fail = log.hook(st, splitKey, func(_ int, evs []string) error {
				if len(evs) == 1 && strings.HasPrefix(evs[0], "deleted uid-1") {
					src.remove(cmRes.GVR, "a", "x", false)
					if then == "replaced" {
						src.apply(cmRes.GVR, cmUID("uid-3"), false)
						waitInformer(t, h, splitKey, "uid-3")
					} else {
						waitUntil(t, "the informer to drop x", func() bool { return h.ex.runners[0].lookup(splitKey).Obj == nil })
					}
				}
				return nil
			})
			h = startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
			h.waitReady()
			src.apply(cmRes.GVR, cmUID("uid-1"), false)
			waitRecord(t, st, splitKey, "uid-1")
			src.remove(cmRes.GVR, "a", "x", true)
			src.apply(cmRes.GVR, cmUID("uid-2"), true)
			waitWatching(t, src, cmRes.GVR)
			src.expire(cmRes.GVR)
			if then == "replaced" {
				waitRecord(t, st, splitKey, "uid-3")
			} else {
				waitUntil(t, "the deletion step", func() bool { return log.find("deleted uid-1 R") >= 0 })
			}
			quiesce(t, h, "rec")
			want := [][]string{{"added uid-1"}, {"gap"}, {"deleted uid-1 R"}}
			if then == "replaced" {
				want = append(want, []string{"added uid-3"})
			}
			if got := log.String(); got != sendLogOf(want) {
				t.Fatalf("sends%s, want%s", got, sendLogOf(want))
			}
			if r, ok := st.Get(splitKey); then == "deleted" && ok {
				t.Fatalf("record %+v left for a deleted key", r)
			}
		})
	}
}

// Without a checkpoint (MemoryStore) the deletion and the added event
// still go in one send.
func TestReplacedIncarnationInOneSendWithoutCheckpoint(t *testing.T) {
	src := newFakeSource(0)
	var log sendLog
	sink := &recorder{}
	sink.fail = log.hook(nil, splitKey, nil)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("uid-1"), false)
	waitUntil(t, "uid-1 sent", func() bool { return log.find("added uid-1") >= 0 })
	quiesce(t, h, "rec")
	src.remove(cmRes.GVR, "a", "x", true)
	src.apply(cmRes.GVR, cmUID("uid-2"), true)
	waitWatching(t, src, cmRes.GVR)
	src.expire(cmRes.GVR)
	waitUntil(t, "uid-2 sent", func() bool { return log.find("deleted uid-1 R", "added uid-2 R") >= 0 })
	quiesce(t, h, "rec")
	want := sendLogOf([][]string{{"added uid-1"}, {"gap"}, {"deleted uid-1 R", "added uid-2 R"}})
	if got := log.String(); got != want {
		t.Fatalf("sends%s, want%s", got, want)
	}
}

// Through a window with acks out of order and a fifth of them failed,
// many keys replaced by new incarnations (live, coalesced, through a
// relist) reach a checkpointed sink in order per key: a consumer that
// applies the acknowledged events ends with the LIST, never sees an
// incarnation added over another, and no key is in flight twice.
func TestReplacedIncarnationsInOrderThroughWindow(t *testing.T) {
	src := newFakeSource(0)
	const objects = 60
	mk := func(i, gen int) *unstructured.Unstructured {
		u := cm("a", name(i), map[string]any{"gen": fmt.Sprint(gen)})
		u.SetUID(types.UID(fmt.Sprintf("%s-g%d", name(i), gen)))
		return u
	}
	for i := 0; i < objects; i++ {
		src.apply(cmRes.GVR, mk(i, 1), true)
	}
	sink := newAsyncRecorder(16, 8, func(call int, _ []*event.Event) bool { return call%5 == 0 })
	st := newSyncStore()
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}})
	cfg.Workers = 2
	h := startHarness(t, cfg, harnessOpts{src: src, sink: sink, stores: map[string]state.Store{"rec": st}})
	h.waitReady()
	waitWatching(t, src, cmRes.GVR)
	for i := 0; i < objects; i++ {
		src.remove(cmRes.GVR, "a", name(i), false)
		src.apply(cmRes.GVR, mk(i, 2), false)
		if i%3 == 0 {
			src.remove(cmRes.GVR, "a", name(i), false)
			src.apply(cmRes.GVR, mk(i, 3), false)
		}
		if i%7 == 0 {
			src.remove(cmRes.GVR, "a", name(i), false)
		}
	}
	for i := 1; i < objects; i += 4 {
		// Replaced while the watch is down.
		src.remove(cmRes.GVR, "a", name(i), true)
		src.apply(cmRes.GVR, mk(i, 4), true)
	}
	waitWatching(t, src, cmRes.GVR)
	src.expire(cmRes.GVR)
	want := map[string]string{}
	src.mu.Lock()
	for _, u := range src.objs[cmRes.GVR] {
		want[u.GetName()] = string(u.GetUID())
	}
	src.mu.Unlock()
	replay := func(acked []*event.Event) (map[string]string, []string) {
		state := map[string]string{}
		var bad []string
		for _, e := range acked {
			switch e.Type {
			case event.Added.Type(), event.Modified.Type():
				if have, ok := state[e.Name]; ok && have != e.UID {
					bad = append(bad, fmt.Sprintf("%s: %s %s over %s", e.Name, e.Type, e.UID, have))
				}
				state[e.Name] = e.UID
			case event.Deleted.Type():
				if have, ok := state[e.Name]; ok && have == e.UID {
					delete(state, e.Name)
				}
			}
		}
		return state, bad
	}
	waitUntil(t, "the LIST", func() bool {
		acked, _, _ := sink.snapshot()
		state, _ := replay(acked)
		return fmt.Sprint(state) == fmt.Sprint(want)
	})
	quiesce(t, h, "rec")
	acked, violations, _ := sink.snapshot()
	for _, v := range violations {
		t.Error(v)
	}
	got, bad := replay(acked)
	for _, b := range bad {
		t.Error(b)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replay %v, want %v", got, want)
	}
	st.Range(func(k state.Key, r state.Record) bool {
		if !isSentinel(k) && (want[k.Name] != r.UID || r.Provisional) {
			t.Errorf("%s: record %s provisional=%v, want %s", k.Name, r.UID, r.Provisional, want[k.Name])
		}
		return true
	})
}

// The rules that render a deletion are the same whether appendRules
// hands back the table's own slice or a copy of it: deletionRules over
// either agree for every delivered rule number (known, unknown, out of
// range), and what deletionRules returns (its fallback is the rules
// themselves) cannot be appended into the table's spare capacity.
func TestDeletionRulesOverTheTablesOwnSlice(t *testing.T) {
	r0 := &plan.Rule{Index: 0, Sinks: []string{"s"}}
	r1 := &plan.Rule{Index: 1, Sinks: []string{"s"}}
	r2 := &plan.Rule{Index: 2, Sinks: []string{"s"}}
	table := make([]*plan.Rule, 0, 6) // spare capacity, as scope.update's copy may have
	table = append(table, r0, r1, r2)
	before := fullCopy(table)
	got := appendRules(nil, table, "s")
	if &got[0] != &table[0] {
		t.Fatal("the fast path was not taken: this test means to exercise the table's own slice")
	}
	final := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	for delivered := -1; delivered <= 4; delivered++ {
		dr := plan.DeletionRules(got, delivered, final)
		want := plan.DeletionRules([]*plan.Rule{r0, r1, r2}, delivered, final) // a copy of the table
		if !sameRules(dr, want) {
			t.Fatalf("delivered %d: deletion rules %s, want %s", delivered, ruleList(dr), ruleList(want))
		}
		_ = append(dr, &plan.Rule{Index: 7})
	}
	if !sameRules(fullCopy(table), before) {
		t.Fatalf("the table was written: %s, was %s", ruleList(fullCopy(table)), ruleList(before))
	}
}
