package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// flakySyncStore is a syncStore whose group commit fails every other call
// (a checkpoint that comes and goes): what was Put stays pending.
type flakySyncStore struct {
	*syncStore
	calls atomic.Int64
}

func (s *flakySyncStore) Sync(ctx context.Context) error {
	if s.calls.Add(1)%2 == 1 {
		return errors.New("checkpoint unavailable")
	}
	return s.syncStore.Sync(ctx)
}

// With a checkpoint that fails every other group commit, every change is
// still delivered, and none reaches the sink before the record written
// ahead of it is durable: added, modified, deleted, a new incarnation of
// the name, and its deletion.
func TestEverySendIsPrecededByItsDurableRecord(t *testing.T) {
	src := newFakeSource(0)
	st := &flakySyncStore{syncStore: newSyncStore()}
	var mu sync.Mutex
	var bad []string
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, e := range evs {
			if e.Type == event.TypeGap {
				continue
			}
			r, ok := st.durable[splitKey]
			if !aheadOf(r, ok, e) {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s sent while the durable record was %+v (%v)", e.ID, r, ok))
				mu.Unlock()
			}
		}
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	step := func(what string, n int, do func()) {
		do()
		sink.waitFor(t, what, func(e []*event.Event) bool { return len(e) >= n })
	}
	step("added", 1, func() { src.apply(cmRes.GVR, cmUID("one"), false) })
	step("modified", 2, func() {
		u := cmUID("one")
		u.Object["data"] = map[string]any{"v": "2"}
		src.apply(cmRes.GVR, u, false)
	})
	step("deleted", 3, func() { src.remove(cmRes.GVR, "a", "x", false) })
	step("added again", 4, func() { src.apply(cmRes.GVR, cmUID("two"), false) })
	step("deleted again", 5, func() { src.remove(cmRes.GVR, "a", "x", false) })
	quiesce(t, h, "rec")
	evs := sink.got()
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad {
		t.Error(b)
	}
	want := []string{"one added", "one modified", "one deleted", "two added", "two deleted"}
	var got []string
	for _, e := range evs {
		got = append(got, e.UID+" "+e.Type[len(event.TypePrefix):])
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %v, want %v", got, want)
	}
	if st.calls.Load() < 2 {
		t.Errorf("%d group commits: the failing checkpoint was never exercised", st.calls.Load())
	}
	if _, ok := st.Get(splitKey); ok {
		t.Error("a record is left for the deleted object")
	}
}
