package exporter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
)

// The ids of sent gap markers are remembered for an hour, not forever.
func TestGapBookForgetsOldMarkers(t *testing.T) {
	b := newGapBook()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		b.markSent(&gap{ev: &event.Event{ID: fmt.Sprintf("g%d", i)}}, start)
	}
	if isNew, _ := b.markSent(&gap{ev: &event.Event{ID: "late"}}, start.Add(2*gapMemory)); !isNew {
		t.Fatal("a new marker was taken as sent")
	}
	if n := len(b.sent); n != 1 {
		t.Fatalf("%d marker ids remembered after two hours, want 1", n)
	}
	if !b.await(&gap{ev: &event.Event{ID: "g1"}}, item{name: "k"}) {
		t.Error("an hour-old marker id is still remembered")
	}
}

// A recovered change waits for its gap marker's ack without holding a
// worker: with one worker, a live change of another object is sent while
// the marker is unacknowledged; a marker whose send fails is sent again,
// and only its ack lets the recovered change go.
func TestRecoveredChangeWaitsForItsMarkerWithoutHoldingAWorker(t *testing.T) {
	sink := &answeredSink{pubs: make(chan answeredPub, 16)}
	cfg := newConfig([]config.Watch{{Resource: "configmaps"}})
	cfg.Workers = 1
	h := startHarness(t, cfg, harnessOpts{sink: sink})
	h.waitReady()
	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "1"}), false)
	if p := sink.next(t); brief(p.evs) != "added x" {
		t.Fatalf("first publish %s, want added x", summary(p.evs))
	} else {
		p.done(nil)
	}

	h.src.apply(cmRes.GVR, cm("a", "x", map[string]any{"v": "2"}), true)
	h.src.expire(cmRes.GVR)
	marker := sink.next(t)
	if len(marker.evs) != 1 || marker.evs[0].Type != event.TypeGap {
		t.Fatalf("publish after the relist %s, want the gap marker alone", summary(marker.evs))
	}

	h.src.apply(cmRes.GVR, cm("a", "y", nil), false)
	if p := sink.next(t); brief(p.evs) != "added y" {
		t.Fatalf("publish while the marker is unacknowledged %s, want the live add of y", summary(p.evs))
	} else {
		p.done(nil)
	}
	select {
	case p := <-sink.pubs:
		t.Fatalf("%s published before its gap marker was acknowledged", summary(p.evs))
	case <-time.After(200 * time.Millisecond):
	}

	marker.done(errors.New("nack"))
	again := sink.next(t)
	if len(again.evs) != 1 || again.evs[0].ID != marker.evs[0].ID {
		t.Fatalf("publish after the marker failed %s, want the same marker again", summary(again.evs))
	}
	again.done(nil)
	p := sink.next(t)
	if len(p.evs) != 1 || p.evs[0].Type != event.Modified.Type() || !p.evs[0].Data.(*event.ChangeData).Recovered {
		t.Fatalf("publish after the marker's ack %s, want x modified and recovered", summary(p.evs))
	}
	p.done(nil)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.ex.Stats()["rec"]; st.Gaps != 1 || st.Delivered != 4 {
		t.Errorf("stats %+v, want 1 gap and 4 events delivered (the marker counted once)", st)
	}
}

// brief is "added x" for an added x, "gap" for a marker, space-separated.
func brief(evs []*event.Event) string {
	var parts []string
	for _, e := range evs {
		if e.Type == event.TypeGap {
			parts = append(parts, "gap")
			continue
		}
		parts = append(parts, strings.TrimPrefix(e.Type, "io.kubefeed.resource.")+" "+e.Name)
	}
	return strings.Join(parts, " ")
}
