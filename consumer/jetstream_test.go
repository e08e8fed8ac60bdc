package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/jsonpatch"
	jssink "github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// sinkFor is kubefeed's own JetStream sink, so the test reads what it
// really publishes.
func sinkFor(t *testing.T, url, cluster, mode string) *jssink.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jssink.New(ctx, jssink.Options{Cluster: cluster, Config: config.JetStreamSink{
		NATSConnection: config.NATSConnection{Servers: []string{url}}, Stream: "KUBEFEED",
		Subject: config.DefaultSubject, Mode: mode, MaxPending: 64,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func producerEvent(cluster string, c event.Change, obj map[string]any, prev string, patch []jsonpatch.Op) *event.Event {
	md := obj["metadata"].(map[string]any)
	uid, rv, name := md["uid"].(string), md["resourceVersion"].(string), md["name"].(string)
	return &event.Event{
		SpecVersion: event.SpecVersion, ID: event.ID(uid, rv, c), Source: "kubefeed/" + cluster, Type: c.Type(),
		Subject: "/api/v1/namespaces/shop/configmaps/" + name, Time: time.Now().UTC(), DataContentType: event.DataContentType,
		Cluster: cluster, APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "shop", Name: name,
		UID: uid, ResourceVersion: rv, Data: &event.ChangeData{Object: obj, Patch: patch, PreviousResourceVersion: prev},
	}
}

func TestReadJetStream(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KUBEFEED", Subjects: []string{"kubefeed.>"}}); err != nil {
		t.Fatal(err)
	}
	structured := sinkFor(t, srv.URL(), "test", "")
	binary := sinkFor(t, srv.URL(), "test", "binary")
	elsewhere := sinkFor(t, srv.URL(), "other", "")

	v1 := cmObj("web", "u1", "10", map[string]any{"a": "1"})
	v2 := cmObj("web", "u1", "11", map[string]any{"a": "2"})
	db := cmObj("db", "u9", "12", map[string]any{"x": "y"})
	send := func(s *jssink.Sink, evs ...*event.Event) {
		t.Helper()
		if err := s.Send(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	g := &event.Event{SpecVersion: event.SpecVersion, ID: "gap.1", Source: "kubefeed/test", Type: event.TypeGap, Time: time.Now().UTC(),
		DataContentType: event.DataContentType, Cluster: "test", Resource: "configmaps", Namespace: "shop",
		Data: &event.GapData{Scope: "configmaps -n shop", Reason: "restart"}}
	send(structured, producerEvent("test", event.Added, v1, "", nil), g)
	send(binary, producerEvent("test", event.Modified, v2, "10", []jsonpatch.Op{{Op: "replace", Path: "/data/a", Value: "2"}}))
	send(elsewhere, producerEvent("other", event.Added, db, "", nil)) // another cluster: filtered out
	// A re-send after JetStream's duplicate window: a duplicate by id only.
	again, _ := event.Marshal(producerEvent("test", event.Added, v1, "", nil))
	if _, err := js.Publish(ctx, "kubefeed.test.core.configmaps.shop.added", again); err != nil {
		t.Fatal(err)
	}

	var gaps []Gap
	s := New(Options{OnGap: func(g Gap) { gaps = append(gaps, g) }})
	filter := []string{"kubefeed.test.>"}
	res, err := ReadJetStream(ctx, js, s, ReadOptions{Stream: "KUBEFEED", Subjects: filter, FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 4 || res.FirstSeq != 1 || res.LastSeq != 5 || res.EndSeq != 5 || res.StreamFirstSeq != 1 {
		t.Errorf("read %+v, want 4 messages, sequences 1 to 5", res)
	}
	got, ok := s.Get(cmKey)
	if !ok || mustJSON(got.Object) != mustJSON(v2) || got.EventID != "u1.11.modified" {
		t.Errorf("held %+v, want version 11 rebuilt by the binary-mode patch", got)
	}
	if s.Len() != 1 || s.Stats().Duplicates != 1 || s.Stats().Rebased != 0 {
		t.Errorf("%d objects, stats %+v; want 1 object and 1 duplicate", s.Len(), s.Stats())
	}
	if len(gaps) != 1 || gaps[0].Reason != "restart" || gaps[0].Scope != "configmaps -n shop" {
		t.Errorf("gaps %+v", gaps)
	}

	// The tail: only what came after, into the same state.
	send(structured, producerEvent("test", event.Deleted, v2, "", nil))
	send(elsewhere, producerEvent("other", event.Deleted, db, "", nil)) // the last message does not match the filter
	tail, err := ReadJetStream(ctx, js, s, ReadOptions{Stream: "KUBEFEED", Subjects: filter, StartSeq: res.LastSeq + 1, FetchWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if tail.Messages != 1 || tail.LastSeq != 6 || s.Len() != 0 {
		t.Errorf("tail %+v, %d objects; want the deletion only", tail, s.Len())
	}

	// Nothing after the tail, nothing matching, nothing after a start time:
	// each read returns at once with nothing.
	for name, o := range map[string]ReadOptions{
		"past the end":     {StartSeq: tail.LastSeq + 1, Subjects: filter},
		"no match":         {Subjects: []string{"kubefeed.nowhere.>"}},
		"start time later": {StartTime: time.Now().Add(time.Hour)},
	} {
		o.Stream, o.FetchWait = "KUBEFEED", time.Minute // a wait would time the test out
		r, err := ReadJetStream(ctx, js, New(Options{}), o)
		if err != nil || r.Messages != 0 {
			t.Errorf("%s: %+v, %v", name, r, err)
		}
	}

	// From a start time: only the messages stored since.
	mark := time.Now()
	send(structured, producerEvent("test", event.Added, cmObj("late", "u5", "30", nil), "", nil))
	late := New(Options{})
	if r, err := ReadJetStream(ctx, js, late, ReadOptions{Stream: "KUBEFEED", Subjects: filter, StartTime: mark}); err != nil || r.Messages != 1 || late.Len() != 1 {
		t.Errorf("from a start time: %+v, %d objects, %v", r, late.Len(), err)
	}

	if _, err := ReadJetStream(ctx, js, New(Options{}), ReadOptions{Stream: "NOPE"}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("missing stream: %v", err)
	}
}

func TestReadJetStreamBadMessage(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"k.>"}}); err != nil {
		t.Fatal(err)
	}
	good, _ := event.Marshal(producerEvent("test", event.Added, cmObj("web", "u1", "10", nil), "", nil))
	for _, body := range [][]byte{[]byte("not json"), good} {
		if _, err := js.Publish(ctx, "k.x", body); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ReadJetStream(ctx, js, New(Options{}), ReadOptions{Stream: "S"})
	if err == nil || !strings.Contains(err.Error(), "stream S sequence 1") {
		t.Fatalf("error %v, want one naming sequence 1", err)
	}
	var skipped []uint64
	s := New(Options{})
	res, err := ReadJetStream(ctx, js, s, ReadOptions{Stream: "S", OnError: func(seq uint64, _ error) error { skipped = append(skipped, seq); return nil }})
	if err != nil || res.Messages != 2 || s.Len() != 1 || len(skipped) != 1 || skipped[0] != 1 {
		t.Errorf("skipping: %+v, %v, %d objects, skipped %v", res, err, s.Len(), skipped)
	}
}

// TestReadJetStreamEndsWhenItsSubjectsArePurgedMidRead: the stream is
// shared (another cluster's subject holds older messages) and the read's
// subjects are purged while it runs (nats stream purge --subject, or a
// per-subject limit). The read ends (it has nothing left to read) instead
// of fetching again and again until its context ends.
func TestReadJetStreamEndsWhenItsSubjectsArePurgedMidRead(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"k.>"}})
	if err != nil {
		t.Fatal(err)
	}
	// seq 1: another cluster's event; seq 2: a bad message of ours (the
	// hook to purge mid-read); seq 3-5: our events.
	other, _ := event.Marshal(producerEvent("b", event.Added, cmObj("x", "ub", "1", nil), "", nil))
	if _, err := js.Publish(ctx, "k.b.x", other); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "k.a.x", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	for i, uid := range []string{"u1", "u2", "u3"} {
		b, _ := event.Marshal(producerEvent("a", event.Added, cmObj("web"+uid, uid, "1"+string(rune('0'+i)), nil), "", nil))
		if _, err := js.Publish(ctx, "k.a.x", b); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	_, err = ReadJetStream(rctx, js, New(Options{}), ReadOptions{
		Stream: "S", Subjects: []string{"k.a.>"}, Batch: 1, FetchWait: 200 * time.Millisecond,
		OnError: func(uint64, error) error {
			return st.Purge(ctx, jetstream.WithPurgeSubject("k.a.>"))
		},
	})
	if err != nil {
		t.Fatalf("read of a purged subject: %v; want it to end without error", err)
	}
}
