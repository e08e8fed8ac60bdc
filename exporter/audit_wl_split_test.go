package exporter

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
)

// Audit of the two-step send of a replaced incarnation to a checkpointed
// sink: order, recovered marks, retractions, failures of either step,
// and the key changing between the steps.

// sendLog records each Send call to a recorder: "type uid[ R]" per event
// (R: recovered; gap markers as "gap"), and the durable record of the
// watched key when the call began.
type sendLog struct {
	mu    sync.Mutex
	calls [][]string
	dur   []*Record
}

func (l *sendLog) hook(st *syncStore, k Key, then func(call int, evs []string) error) func(int, []*event.Event) error {
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
		var dur *Record
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
	return &syncStore{MemoryStore: NewMemoryStore(), durable: map[Key]Record{}}
}

var splitKey = Key{GVR: cmRes.GVR, Namespace: "a", Name: "x"}

// cmUID is cm a/x with a given uid.
func cmUID(uid string) *unstructured.Unstructured {
	u := cm("a", "x", map[string]any{"incarnation": uid})
	u.SetUID(typesUID(uid))
	return u
}

// waitRecord waits until the sink's store holds want (uid, final) for k.
func waitRecord(t *testing.T, st Store, k Key, uid string) {
	t.Helper()
	waitUntil(t, "the record of "+uid, func() bool {
		r, ok := st.Get(k)
		return ok && r.UID == uid && !r.Provisional
	})
}

// waitInformer waits until the informers hold uid for k.
func waitInformer(t *testing.T, h *harness, k Key, uid string) {
	t.Helper()
	waitUntil(t, "the informer to hold "+uid, func() bool {
		c := h.ex.runners[0].lookup(k)
		return c.obj != nil && string(c.obj.GetUID()) == uid
	})
}

// A uid change coalesced with a relist: one gap marker, then the old
// incarnation's deletion and the new one's added event, each sent alone,
// both recovered, in that order.
func TestSplitCoalescedWithRelistGap(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	var log sendLog
	sink := &recorder{fail: log.hook(st, splitKey, nil)}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
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
func TestSplitRetractsUnacknowledgedIncarnation(t *testing.T) {
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
	h = startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
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
func TestSplitDeletionStepFails(t *testing.T) {
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
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
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
func TestSplitKeyChangesBetweenSteps(t *testing.T) {
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
						waitUntil(t, "the informer to drop x", func() bool { return h.ex.runners[0].lookup(splitKey).obj == nil })
					}
				}
				return nil
			})
			h = startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]Store{"rec": st}, sink: sink})
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
func TestSplitNotForMemoryStore(t *testing.T) {
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
func TestSplitOrderThroughWindow(t *testing.T) {
	src := newFakeSource(0)
	const objects = 60
	mk := func(i, gen int) *unstructured.Unstructured {
		u := cm("a", name(i), map[string]any{"gen": fmt.Sprint(gen)})
		u.SetUID(typesUID(fmt.Sprintf("%s-g%d", name(i), gen)))
		return u
	}
	for i := 0; i < objects; i++ {
		src.apply(cmRes.GVR, mk(i, 1), true)
	}
	sink := newAsyncRecorder(16, 8, func(call int, _ []*event.Event) bool { return call%5 == 0 })
	st := newSyncStore()
	cfg := newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}})
	cfg.Workers = 2
	h := startHarness(t, cfg, harnessOpts{src: src, sink: sink, stores: map[string]Store{"rec": st}})
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
	state, bad := replay(acked)
	for _, b := range bad {
		t.Error(b)
	}
	if fmt.Sprint(state) != fmt.Sprint(want) {
		t.Errorf("replay %v, want %v", state, want)
	}
	st.Range(func(k Key, r Record) bool {
		if !isSentinel(k) && (want[k.Name] != r.UID || r.Provisional) {
			t.Errorf("%s: record %s provisional=%v, want %s", k.Name, r.UID, r.Provisional, want[k.Name])
		}
		return true
	})
}
