package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAuditSameSecondIncarnationsAcrossPartitions: an object deleted and
// re-created within one second (kubectl replace --force) has two
// incarnations with the same creationTimestamp. On Kafka their events sit on
// two partitions (the key is the uid), so a consumer can read the new one's
// added before the old one's added and deleted. The new incarnation is the
// one the cluster holds; the State must still hold it at the end.
func TestAuditSameSecondIncarnationsAcrossPartitions(t *testing.T) {
	at := func(o map[string]any, ts string) map[string]any {
		o["metadata"].(map[string]any)["creationTimestamp"] = ts
		return o
	}
	oldV1 := at(cmObj("web", "old", "10", map[string]any{"v": "old"}), "2026-01-01T10:00:00Z")
	newV1 := at(cmObj("web", "new", "20", map[string]any{"v": "new"}), "2026-01-01T10:00:00Z")
	s := New(Options{})
	for _, e := range []*Event{
		change(t, event.Added, newV1, "", nil, ""), // partition 1
		change(t, event.Added, oldV1, "", nil, ""), // partition 0, read later
		change(t, event.Deleted, oldV1, "", nil, ""),
	} {
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := s.Get(cmKey)
	if !ok || got.UID != "new" {
		t.Fatalf("held %v (uid %q), want the new incarnation (uid new): it was never deleted", ok, got.UID)
	}
}

// TestAuditReadJetStreamSubjectPurgedMidRead: the stream is shared (another
// cluster's subject holds older messages) and the read's subjects are
// purged while it runs (nats stream purge --subject, or a per-subject
// limit). The read must end (it has nothing left to read), not fetch again
// and again until its context ends.
func TestAuditReadJetStreamSubjectPurgedMidRead(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
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
