package checkpoint

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
	"github.com/kubefeed/kubefeed/jsonpatch"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// assertRedactedState fails unless r is the Secret as its rule redacts it.
func assertRedactedState(t *testing.T, r state.Record, ok bool) {
	t.Helper()
	if !ok || r.UID != "s1" || r.ResourceVersion != "42" || r.Object == nil {
		t.Fatalf("restored %+v, %v", r, ok)
	}
	if !r.AtRest {
		t.Error("a restored state is not marked AtRest: the core would diff it against the raw object")
	}
	o := r.Object.Object
	data, _ := o["data"].(map[string]any)
	sd, _ := o["stringData"].(map[string]any)
	ann, _ := o["metadata"].(map[string]any)["annotations"].(map[string]any)
	if data["password"] != filters.RedactedMarker || sd["token"] != filters.RedactedMarker ||
		ann["kubectl.kubernetes.io/last-applied-configuration"] != filters.RedactedMarker || ann["team"] != "shop" || o["type"] != "Opaque" {
		t.Errorf("restored state is not the redacted Secret: %v", o)
	}
}

func TestFileKeepsNothingRedacted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kubefeed")
	path := filepath.Join(dir, "cp.db")
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	rec := secretRecord()
	s.Put(secretKey, rec)
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(secretKey); got.Object != rec.Object {
		t.Error("the in-memory record is not the delivered one")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	assertMode(t, filepath.Dir(dir), 0o700)
	n := 0
	for bucket, kv := range boltValues(t, path) {
		for k, v := range kv {
			n++
			assertNoSecret(t, bucket+" "+k, plain(t, v))
		}
	}
	if n < 2 {
		t.Fatalf("%d values in the file, want the record and the meta", n)
	}

	f2, s2 := openAudit(t, path)
	defer f2.Close()
	r, ok := s2.Get(secretKey)
	assertRedactedState(t, r, ok)
}

func TestKVKeepsNothingRedacted(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{srv.URL()}}, Bucket: "cp"}
	kv, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kv.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	s.Put(secretKey, secretRecord())
	if err := kv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, err := natstest.ReadStream(srv.URL(), "KV_cp")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 2 {
		t.Fatalf("%d messages in the bucket's stream, want the record and the meta", len(msgs))
	}
	for _, m := range msgs {
		assertNoSecret(t, m.Subject, plain(t, m.Data))
	}

	kv2, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kv2.Close()
	s2, err := kv2.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s2.Get(secretKey)
	assertRedactedState(t, r, ok)
}

// writeLegacy writes a checkpoint file as kubefeed did before records had
// a format: the raw state of the Secret. It returns that state as stored
// (gzip).
func writeLegacy(t *testing.T, path string) []byte {
	t.Helper()
	st, err := encodeRecord(state.Record{UID: "s1", ResourceVersion: "42", Object: secret(), Scope: "secrets -n shop"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(st, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "f")
	legacy, _ := json.Marshal(m)
	var raw stored
	if err := json.Unmarshal(legacy, &raw); err != nil || len(raw.State) == 0 {
		t.Fatalf("legacy record %s: %v", legacy, err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucketIfNotExists(metaBucket)
		if err := meta.Put([]byte("audit"), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
		b, _ := tx.CreateBucketIfNotExists([]byte("sink/audit"))
		return b.Put([]byte(keyString(secretKey)), legacy)
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw.State
}

func TestLegacyRecordIsRewrittenWithoutRawState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	rawState := writeLegacy(t, path)
	legacyFile, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secretAtRest := func() bool {
		v := boltValues(t, path)["sink/audit"][keyString(secretKey)]
		var s stored
		if err := json.Unmarshal(v, &s); err != nil {
			t.Fatal(err)
		}
		return len(s.State) > 0 && s.Format == 0
	}
	if !secretAtRest() {
		t.Fatal("the legacy file holds no raw state: the test proves nothing")
	}

	// Restored, the record keeps its state in memory (for this run's
	// diff); the next flush, without any Put, writes it back stateless.
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Get(secretKey); !ok || r.Object == nil || r.Object.Object["stringData"].(map[string]any)["token"] != secretValue {
		t.Fatalf("legacy record not restored with its state: %+v", r)
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Nor in the pages the rewrite freed (bbolt does not clear them, and
	// only a later write reuses them): the file was compacted.
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(legacyFile, []byte(base64.StdEncoding.EncodeToString(rawState))) {
		t.Fatal("the legacy file does not hold its state as expected: the check below proves nothing")
	}
	if bytes.Contains(file, []byte(base64.StdEncoding.EncodeToString(rawState))) {
		t.Error("the legacy raw state is still in the file's free pages")
	}
	assertMode(t, path, 0o600)
	if left, _ := filepath.Glob(path + ".*"); len(left) != 0 {
		t.Errorf("compaction left %v", left)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	v := boltValues(t, path)["sink/audit"][keyString(secretKey)]
	assertNoSecret(t, "rewritten legacy record", plain(t, v))
	var st stored
	if err := json.Unmarshal(v, &st); err != nil || st.Format != recordFormat || st.UID != "s1" || st.RV != "42" || len(st.State) != 0 {
		t.Errorf("rewritten legacy record %s (%v), want uid and version only in format %d", v, err, recordFormat)
	}

	// Put again with its rule's redaction, it keeps the redacted state.
	f, err = OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err = f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Get(secretKey); !ok || r.Object != nil || r.UID != "s1" {
		t.Errorf("stateless record restored as %+v", r)
	}
	s.Put(secretKey, secretRecord())
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	v = boltValues(t, path)["sink/audit"][keyString(secretKey)]
	assertNoSecret(t, "re-Put record", plain(t, v))
	f, err = OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, _ = f.Store("audit")
	r, ok := s.Get(secretKey)
	assertRedactedState(t, r, ok)
}

// A record written ahead of a deletion (the final state, Deleting, with
// what was sent) is restored as written, its state redacted as its rule
// redacts it: the final state of a Secret rests no more in clear than a
// delivered one.
func TestDeletionWrittenAheadIsRestoredAsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	f, s := openAudit(t, path)
	rec := secretRecord()
	rec.Deleting = true
	sentAt := time.Date(2026, 12, 7, 1, 2, 3, 456789012, time.UTC)
	rec.Sent = &state.Sent{ResourceVersion: "42", Time: sentAt, Recovered: true}
	s.Put(secretKey, rec)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	assertFileHoldsNoSecret(t, path)
	f2, s2 := openAudit(t, path)
	defer f2.Close()
	r, ok := s2.Get(secretKey)
	assertRedactedState(t, r, ok)
	if !r.Deleting || r.Provisional || r.Sent == nil || r.Sent.ResourceVersion != "42" || !r.Sent.Time.Equal(sentAt) || !r.Sent.Recovered {
		t.Errorf("restored Deleting=%v Provisional=%v Sent=%+v, want Deleting and Sent{42 %s true}", r.Deleting, r.Provisional, r.Sent, sentAt)
	}
}

// A legacy record's state (which may hold what its rule redacts) Put
// again unchanged, as a record written ahead of a modification carries the
// delivered state on, is still written without it.
func TestLegacyStatePutAgainUnchangedRestsWithoutIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	writeLegacy(t, path)
	f, s := openAudit(t, path)
	r, ok := s.Get(secretKey)
	if !ok || r.Object == nil {
		t.Fatalf("legacy record not restored: %+v", r)
	}
	r.Sent = &state.Sent{ResourceVersion: "43", Time: time.Unix(1, 0), Patch: []jsonpatch.Op{}}
	s.Put(secretKey, r)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	assertFileHoldsNoSecret(t, path)
}

// What a record written ahead of a modification keeps of its patch comes
// back as it was sent: integers beyond 2^53, nulls, keys with '/' and '~'.
func TestSentPatchRoundTrip(t *testing.T) {
	ops := []jsonpatch.Op{
		{Op: jsonpatch.OpReplace, Path: "/spec/big", Value: int64(9007199254740993)},
		{Op: jsonpatch.OpAdd, Path: "/spec/a~1b~0c", Value: nil},
		{Op: jsonpatch.OpAdd, Path: "/spec/m", Value: map[string]any{"x": 1.5, "y": []any{"<b>", int64(-9007199254740993)}}},
		{Op: jsonpatch.OpRemove, Path: "/spec/gone"},
	}
	b, err := encodeRecord(state.Record{UID: "u", ResourceVersion: "1", Sent: &state.Sent{ResourceVersion: "2", Time: time.Unix(5, 6), Patch: ops, ChangedPaths: []string{"/spec/big"}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(ops)
	got, _ := json.Marshal(r.Sent.Patch)
	if !bytes.Equal(want, got) || len(r.Sent.ChangedPaths) != 1 || !r.Sent.Time.Equal(time.Unix(5, 6)) {
		t.Errorf("sent patch %s, want %s; %+v", got, want, r.Sent)
	}
	// A modification sent without a patch keeps an empty one, not none.
	b, _ = encodeRecord(state.Record{UID: "u", ResourceVersion: "1", Sent: &state.Sent{ResourceVersion: "2", Patch: []jsonpatch.Op{}}}, false)
	if r, _, _ = decodeRecord(b); r.Sent == nil || r.Sent.Patch == nil {
		t.Errorf("an empty patch came back as none: %+v", r.Sent)
	}
}

// A record written ahead of the deletion of an object near the API
// server's 1 MiB limit keeps its whole final state in the file: sent again
// after a crash, the deletion carries the same object.
func TestDeletionWrittenAheadNearOneMiBKeepsItsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	f, s := openAudit(t, path)
	big := strings.Repeat("x\u00e9\"\\", 900<<10/5)
	k := state.Key{Namespace: "a", Name: "big/~1"}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "big/~1", "namespace": "a", "uid": "u", "resourceVersion": "9007199254740993"},
		"data":     map[string]any{"v": big, "n": nil}}}
	sentAt := time.Unix(7, 8)
	s.Put(k, state.Record{UID: "u", ResourceVersion: "9007199254740993", Object: obj, Deleting: true,
		Sent: &state.Sent{ResourceVersion: "9007199254740993", Time: sentAt}})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f2, s2 := openAudit(t, path)
	defer f2.Close()
	r, ok := s2.Get(k)
	if !ok || !r.Deleting || r.Sent == nil || !r.Sent.Time.Equal(sentAt) || r.Object == nil {
		t.Fatalf("restored %v: Deleting=%v Sent=%+v state=%v", ok, r.Deleting, r.Sent, r.Object != nil)
	}
	data := r.Object.Object["data"].(map[string]any)
	if data["v"] != big || data["n"] != nil {
		t.Errorf("the final state near 1 MiB came back changed (%d of %d bytes)", len(data["v"].(string)), len(big))
	}
	if _, has := data["n"]; !has {
		t.Error("a null value of the final state was dropped")
	}
}
