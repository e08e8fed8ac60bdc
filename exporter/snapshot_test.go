package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks"
)

// snapshotCheck checks the snapshot id in evs (one sink's events, in the
// order acknowledged): its started marker comes before every snapshot
// event, its completed marker after, with their count; every object of
// want appears exactly once between them, at the version the sink last
// got before it (never older than a change already sent, never newer
// than one not sent yet); and no snapshot event of an object follows a
// newer change of it.
func snapshotCheck(t *testing.T, evs []*event.Event, id string, want map[string]bool) {
	t.Helper()
	started, completed := -1, -1
	seen := map[string]int{}
	lastRV := map[string]string{} // name -> rv of the last change sent
	count := 0
	for i, e := range evs {
		switch {
		case e.Type == event.TypeSnapshotStarted && e.Data.(*event.SnapshotData).ID == id:
			if started >= 0 {
				t.Fatalf("started twice: %s", summary(evs))
			}
			started = i
		case e.Type == event.TypeSnapshotCompleted && e.Data.(*event.SnapshotData).ID == id:
			completed = i
			if c := e.Data.(*event.SnapshotData).Count; c == nil || *c != count {
				t.Fatalf("completed counts %v, %d snapshot events were sent", c, count)
			}
			if !strings.HasSuffix(e.ID, ".completed."+strconv.Itoa(count)) {
				t.Fatalf("completed id %s does not end with its count %d", e.ID, count)
			}
		case e.Type == event.Snapshot.Type():
			if e.ID != event.SnapshotID(e.UID, e.ResourceVersion, id) {
				lastRV[e.Name] = e.ResourceVersion // another snapshot's
				continue
			}
			if started < 0 || completed >= 0 {
				t.Fatalf("snapshot event %s outside its markers (started %d, completed %d)", e.ID, started, completed)
			}
			seen[e.Name]++
			count++
			if lastRV[e.Name] != e.ResourceVersion {
				t.Fatalf("snapshot of %s at %s, but the last change sent was %q", e.Name, e.ResourceVersion, lastRV[e.Name])
			}
		case e.Change() == event.Added || e.Change() == event.Modified:
			lastRV[e.Name] = e.ResourceVersion
		case e.Change() == event.Deleted:
			delete(lastRV, e.Name)
		}
	}
	if started < 0 || completed < 0 {
		t.Fatalf("markers missing (started %d, completed %d): %s", started, completed, summary(evs))
	}
	for name := range want {
		if seen[name] != 1 {
			t.Errorf("%s appears %d times in the snapshot", name, seen[name])
		}
	}
	for name, n := range seen {
		if !want[name] {
			t.Errorf("%s (%d times) was not to be in the snapshot", name, n)
		}
	}
}

func TestSnapshotSendsEveryObjectOnceBetweenItsMarkers(t *testing.T) {
	src := newFakeSource(0)
	want := map[string]bool{}
	for i := range 40 {
		name := "cm-" + strconv.Itoa(i)
		src.apply(cmRes.GVR, cm("a", name, map[string]any{"v": "1"}), true)
		want[name] = true
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "40 added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 40 })
	res, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s1", Resource: "configmaps"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Count != 40 || res[0].Sink != "rec" || len(res[0].Resources) != 1 || res[0].Resources[0] != "configmaps" {
		t.Fatalf("result %+v", res)
	}
	evs := h.sinks["rec"].got()
	snapshotCheck(t, evs, "s1", want)
	for _, e := range evs {
		if e.Type != event.Snapshot.Type() {
			continue
		}
		d := e.Data.(*event.ChangeData)
		if d.Object == nil || d.Patch != nil || d.Recovered {
			t.Fatalf("snapshot event data %+v", d)
		}
	}
	// A second snapshot of the same unchanged objects has other ids.
	if _, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s2"}); err != nil {
		t.Fatal(err)
	}
	snapshotCheck(t, h.sinks["rec"].got(), "s2", want)
}

// Changes keep flowing while a snapshot runs, through a sink that fails
// every fourth send: each object is in the snapshot once, at the version
// the sink holds, and no snapshot event comes after a newer change.
func TestSnapshotDuringChangesNeverOvertakesANewerChange(t *testing.T) {
	src := newFakeSource(0)
	want := map[string]bool{}
	for i := range 60 {
		name := "cm-" + strconv.Itoa(i)
		src.apply(cmRes.GVR, cm("a", name, map[string]any{"v": "0"}), true)
		want[name] = true
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
	h.sinks["rec"].setFail(func(call int, _ []*event.Event) error {
		if call%4 == 0 {
			return errors.New("sink unavailable")
		}
		return nil
	})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "60 added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 60 })
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for v := 1; ; v++ {
			select {
			case <-stop:
				return
			default:
			}
			name := "cm-" + strconv.Itoa(rng.IntN(60))
			src.apply(cmRes.GVR, cm("a", name, map[string]any{"v": strconv.Itoa(v)}), false)
			time.Sleep(time.Millisecond)
		}
	}()
	res, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "busy"})
	close(stop)
	writer.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Count != 60 {
		t.Fatalf("count %d", res[0].Count)
	}
	snapshotCheck(t, quiesce(t, h, "rec"), "busy", want)
}

// An object deleted before its key's turn is not in the snapshot; one
// filtered out by its rule is not either, and is not counted.
func TestSnapshotLeavesOutDeletedAndFilteredObjects(t *testing.T) {
	src := newFakeSource(0)
	want := map[string]bool{}
	for i := range 10 {
		name := "cm-" + strconv.Itoa(i)
		data := map[string]any{"keep": "yes"}
		if i >= 8 {
			data = map[string]any{"keep": "no"}
		} else {
			want[name] = true
		}
		src.apply(cmRes.GVR, cm("a", name, data), true)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit, Filter: `object.data.keep == "yes"`}}), harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "8 added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 8 })
	// Hold the sink while the snapshot notes its keys, and delete one.
	gate := make(chan struct{})
	h.sinks["rec"].setFail(func(_ int, evs []*event.Event) error {
		if evs[0].Type == event.TypeSnapshotStarted {
			return nil
		}
		<-gate
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s", Resource: "configmaps", Namespace: "a"})
		done <- err
	}()
	h.sinks["rec"].waitFor(t, "started", func(evs []*event.Event) bool { return count(evs, event.TypeSnapshotStarted) == 1 })
	var open sync.Once
	defer open.Do(func() { close(gate) })
	waitUntil(t, "the snapshot's keys noted", func() bool { return h.ex.runners[0].pending.len() >= 8 }) // 10 noted; the 2 filtered out finish at once
	src.remove(cmRes.GVR, "a", "cm-7", false)
	delete(want, "cm-7")
	open.Do(func() { close(gate) })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs := h.sinks["rec"].waitFor(t, "the deletion", func(evs []*event.Event) bool { return count(evs, event.Deleted.Type()) == 1 })
	// cm-7 may have had its snapshot event before its deletion reached
	// the sink: that is allowed; after the deletion it is not.
	deletedAt := -1
	for i, e := range evs {
		if e.Name == "cm-7" && e.Change() == event.Deleted {
			deletedAt = i
		}
		if e.Name == "cm-7" && e.Type == event.Snapshot.Type() {
			if deletedAt >= 0 {
				t.Fatalf("snapshot of cm-7 after its deletion: %s", summary(evs))
			}
			want["cm-7"] = true
		}
	}
	snapshotCheck(t, evs, "s", want)
}

func TestSnapshotOfAResourceNotWatchedIsAnError(t *testing.T) {
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{})
	h.waitReady()
	_, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "x", Resource: "secrets"})
	if !errors.Is(err, ErrNoSnapshotScope) {
		t.Fatalf("err %v", err)
	}
	if _, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "x", Sink: "nope"}); err == nil {
		t.Fatal("no error for an unknown sink")
	}
	if n := len(h.sinks["rec"].got()); n != 0 {
		t.Fatalf("%d events sent", n)
	}
}

// A snapshot refused for good by the sink still completes; a snapshot
// whose context ends mid-way leaves no key owing it, so a later one runs.
func TestSnapshotAbandonedLeavesTheSinkFree(t *testing.T) {
	src := newFakeSource(0)
	for i := range 5 {
		src.apply(cmRes.GVR, cm("a", fmt.Sprint("cm-", i), nil), true)
	}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "5 added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 5 })
	block := make(chan struct{})
	h.sinks["rec"].setFail(func(_ int, evs []*event.Event) error {
		if last := evs[len(evs)-1]; last.Type == event.Snapshot.Type() {
			select {
			case <-block:
				return nil
			default:
				return errors.New("not now")
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := h.ex.Snapshot(ctx, SnapshotRequest{ID: "gone"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	close(block)
	h.sinks["rec"].setFail(func(_ int, evs []*event.Event) error {
		if last := evs[len(evs)-1]; last.Type == event.Snapshot.Type() && last.Name == "cm-0" {
			return sinks.Permanent(errors.New("too large"))
		}
		return nil
	})
	res, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "next"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Count != 4 {
		t.Fatalf("count %d, want 4 (one refused)", res[0].Count)
	}
	snapshotCheck(t, quiesce(t, h, "rec"), "next", map[string]bool{"cm-1": true, "cm-2": true, "cm-3": true, "cm-4": true})
}

// Two scopes of one sink that hold the same objects (a rule for
// namespace a, another for every namespace): each object is in the
// snapshot once and counted once, however fast its key is delivered
// while the other scope is still enumerated.
func TestSnapshotOfOverlappingScopesSendsEachObjectOnce(t *testing.T) {
	src := newFakeSource(0)
	want := map[string]bool{}
	for i := range 20 {
		name := "a-" + strconv.Itoa(i)
		src.apply(cmRes.GVR, cm("a", name, map[string]any{"v": "1"}), true)
		want[name] = true
	}
	for i := range 3000 {
		name := "b-" + strconv.Itoa(i)
		src.apply(cmRes.GVR, cm("b", name, map[string]any{"v": "1"}), true)
		want[name] = true
	}
	h := startHarness(t, newConfig([]config.Watch{
		{Resource: "configmaps", Namespaces: []string{"a"}, InitialList: config.InitialListEmit},
		{Resource: "configmaps", InitialList: config.InitialListEmit},
	}), harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "3020 added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 3020 })
	for round := range 5 {
		id := "s" + strconv.Itoa(round)
		res, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Count != len(want) {
			t.Fatalf("%s: count %d, want %d", id, res[0].Count, len(want))
		}
		snapshotCheck(t, quiesce(t, h, "rec"), id, want)
	}
}

// The two-step send of a replaced incarnation to a checkpointed sink
// owes the snapshot event to its second step. A snapshot abandoned while
// the first step was in flight is not handed on to the second: the next
// snapshot, which noted the key meanwhile, still completes, with the new
// incarnation after its added event.
func TestSnapshotAbandonedDuringASplitSendLeavesTheNextOneWhole(t *testing.T) {
	src := newFakeSource(0)
	st := newSyncStore()
	gate := make(chan struct{})
	var (
		mu       sync.Mutex
		holding  bool // the deletion of uid-1 waits for gate; its first attempt fails
		attempts int
		held     = make(chan struct{}, 4)
	)
	sink := &recorder{fail: func(_ int, evs []*event.Event) error {
		if evs[0].Type != event.Deleted.Type() || evs[0].UID != "uid-1" {
			return nil
		}
		mu.Lock()
		hold := holding
		attempts++
		n := attempts
		mu.Unlock()
		if !hold {
			return nil
		}
		held <- struct{}{}
		<-gate
		if n == 1 {
			return errors.New("not now")
		}
		return nil
	}}
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps"}}), harnessOpts{src: src, stores: map[string]state.Store{"rec": st}, sink: sink})
	h.waitReady()
	src.apply(cmRes.GVR, cmUID("uid-1"), false)
	waitRecord(t, st, splitKey, "uid-1")
	mu.Lock()
	holding = true
	mu.Unlock()
	src.remove(cmRes.GVR, "a", "x", true)
	src.apply(cmRes.GVR, cmUID("uid-2"), false) // the deletion of uid-1 is inferred: a split send
	<-held
	// Snapshot a notes the key while its first step is in flight; that
	// step fails, and its retry carries snapshot a.
	actx, cancel := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() { _, err := h.ex.Snapshot(actx, SnapshotRequest{ID: "a"}); aDone <- err }()
	waitUntil(t, "snapshot a to note the key", func() bool { return h.ex.runners[0].pending.snapshot(keyItem(splitKey)).snapshot != nil })
	gate <- struct{}{}
	<-held
	cancel()
	if err := <-aDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("snapshot a: %v", err)
	}
	bDone := make(chan error, 1)
	var res []SnapshotResult
	go func() {
		var err error
		res, err = h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "b"})
		bDone <- err
	}()
	waitUntil(t, "snapshot b to note the key", func() bool {
		run := h.ex.runners[0].pending.snapshot(keyItem(splitKey)).snapshot
		return run != nil && run.id == "b"
	})
	close(gate)
	select {
	case err := <-bDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second): // a liveness bound
		t.Fatalf("snapshot b never completed: %s", summary(sink.got()))
	}
	if res[0].Count != 1 {
		t.Fatalf("count %d", res[0].Count)
	}
	quiesce(t, h, "rec")
	evs := sink.got()
	for _, e := range evs {
		if e.Type == event.Snapshot.Type() && e.ID != event.SnapshotID("uid-2", e.ResourceVersion, "b") {
			t.Fatalf("snapshot event %s of no completed snapshot: %s", e.ID, summary(evs))
		}
	}
	snapshotCheck(t, evs, "b", map[string]bool{"x": true})
}

// A Secret's snapshot event shows its object exactly as its added event
// did: redacted by the rule (by default, hashed, and redactPaths).
func TestSnapshotOfASecretIsRedactedAsItsAddedEvent(t *testing.T) {
	for _, redact := range []string{"", "hash"} {
		t.Run("redact="+redact, func(t *testing.T) {
			src := newFakeSource(0)
			src.apply(secretRes.GVR, secretObj("x", "c2VjcmV0", map[string]any{"stringData": map[string]any{"s": "plain"},
				"metadata": map[string]any{"namespace": "a", "name": "x", "annotations": map[string]any{"token": "t0ps3cret"}}}), true)
			cfg := newConfig([]config.Watch{{Resource: "secrets", InitialList: config.InitialListEmit, Redact: redact,
				RedactPaths: []string{"/metadata/annotations/token"}}})
			if redact == "hash" {
				cfg.RedactionKeyFile = redactionKeyFile(t)
			}
			h := startHarness(t, cfg, harnessOpts{src: src})
			h.waitReady()
			h.sinks["rec"].waitFor(t, "the added event", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 1 })
			if _, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s"}); err != nil {
				t.Fatal(err)
			}
			added, snap := addedAndSnapshot(t, h.sinks["rec"].got(), func(e *event.Event) ([]byte, error) {
				return json.Marshal(e.Data.(*event.ChangeData).Object)
			})
			if snap == nil || string(snap) != string(added) {
				t.Fatalf("snapshot object %s\nadded object %s", snap, added)
			}
			for _, secret := range []string{"c2VjcmV0", "plain", "t0ps3cret"} {
				if strings.Contains(string(snap), secret) {
					t.Fatalf("%q in the snapshot event: %s", secret, snap)
				}
			}
		})
	}
}

// A snapshot whose exporter stops before its keys were delivered returns
// an error, rather than waiting for a queue nobody works any more.
func TestSnapshotReturnsWhenTheExporterStops(t *testing.T) {
	src := newFakeSource(0)
	for i := range 5 {
		src.apply(cmRes.GVR, cm("a", fmt.Sprint("cm-", i), nil), true)
	}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.ShutdownTimeout.Duration = 200 * time.Millisecond
	h := startHarness(t, cfg, harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].setFail(func(_ int, evs []*event.Event) error {
		if evs[len(evs)-1].Type == event.Snapshot.Type() {
			return errors.New("not now")
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { _, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s"}); done <- err }()
	h.sinks["rec"].waitFor(t, "started", func(evs []*event.Event) bool { return count(evs, event.TypeSnapshotStarted) == 1 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error")
		}
	case <-time.After(20 * time.Second): // a liveness bound
		t.Fatal("Snapshot still waits after its exporter stopped")
	}
}

// A snapshot event carries the object exactly as an added event does:
// null, an integer beyond 2^53 and a value near 1 MiB included.
func TestSnapshotEventCarriesTheObjectAsItsAddedEvent(t *testing.T) {
	src := newFakeSource(0)
	big := strings.Repeat("x", 1000*1000)
	src.apply(cmRes.GVR, cm("a", "odd", map[string]any{"nothing": nil, "count": int64(9007199254740993), "big": big}), true)
	h := startHarness(t, newConfig([]config.Watch{{Resource: "configmaps", InitialList: config.InitialListEmit}}), harnessOpts{src: src})
	h.waitReady()
	h.sinks["rec"].waitFor(t, "added", func(evs []*event.Event) bool { return count(evs, event.Added.Type()) == 1 })
	if _, err := h.ex.Snapshot(context.Background(), SnapshotRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	added, snap := addedAndSnapshot(t, h.sinks["rec"].got(), event.Marshal)
	for _, want := range []string{`"nothing":null`, `"count":9007199254740993`, `"big":"` + big[:100]} {
		if !strings.Contains(string(snap), want) {
			t.Errorf("snapshot event lacks %.60s", want)
		}
	}
	objectOf := func(b []byte) string { return string(b[strings.Index(string(b), `"data":`):]) }
	if objectOf(snap) != objectOf(added) {
		t.Error("the snapshot event's data differs from the added event's")
	}
}

// addedAndSnapshot encodes, with enc, the last added and the last snapshot
// event of evs.
func addedAndSnapshot(t *testing.T, evs []*event.Event, enc func(*event.Event) ([]byte, error)) (added, snap []byte) {
	t.Helper()
	for _, e := range evs {
		if e.Type != event.Added.Type() && e.Type != event.Snapshot.Type() {
			continue
		}
		b, err := enc(e)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == event.Added.Type() {
			added = b
		} else {
			snap = b
		}
	}
	return added, snap
}
