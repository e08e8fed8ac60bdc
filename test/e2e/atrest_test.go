package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// atRest is one checkpoint record as a backend holds it: its key, the raw
// stored value and, when it carries one, its decompressed state.
type atRest struct {
	key      string
	raw      []byte
	format   int
	state    []byte // the object's JSON, gunzipped from the record's "o"
	hasState bool
}

// decodeAtRest reads a record in the checkpoint's format (see
// exporter/checkpoint/record.go: JSON with "o" the gzip of the object).
func decodeAtRest(t *testing.T, key string, raw []byte) atRest {
	t.Helper()
	var s struct {
		Format int    `json:"f"`
		State  []byte `json:"o"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("checkpoint record %s: %v: %q", key, err, raw)
	}
	r := atRest{key: key, raw: append([]byte(nil), raw...), format: s.Format}
	if len(s.State) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(s.State))
		if err != nil {
			t.Fatalf("checkpoint record %s: state is not gzip: %v", key, err)
		}
		r.state, err = io.ReadAll(zr)
		if err != nil {
			t.Fatalf("checkpoint record %s: state: %v", key, err)
		}
		r.hasState = true
	}
	return r
}

// boltRecords opens a checkpoint file read-only (kubefeed must have
// stopped) and returns every record of every sink bucket.
func boltRecords(t *testing.T, path string) []atRest {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("open checkpoint %s read-only: %v", path, err)
	}
	defer db.Close()
	var out []atRest
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !strings.HasPrefix(string(name), "sink/") {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				out = append(out, decodeAtRest(t, string(name)+" "+string(k), v))
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kvRecords reads the raw messages of a KV bucket's stream (KV_<bucket>)
// and returns the sink records ("s.<sink>.<key>").
func kvRecords(t *testing.T, url, bucket string) []atRest {
	t.Helper()
	msgs, err := natstest.ReadStream(url, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	var out []atRest
	for _, m := range msgs {
		key := strings.TrimPrefix(m.Subject, "$KV."+bucket+".")
		if !strings.HasPrefix(key, "s.") || len(m.Data) == 0 {
			continue // the meta keys, and delete markers
		}
		out = append(out, decodeAtRest(t, key, m.Data))
	}
	return out
}

// kvRawBytes is every message body and header of a KV bucket's stream.
func kvRawBytes(t *testing.T, url, bucket string) []byte {
	t.Helper()
	msgs, err := natstest.ReadStream(url, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, m := range msgs {
		b.WriteString(m.Subject)
		for k, vs := range m.Header {
			b.WriteString(k + ":" + strings.Join(vs, ","))
		}
		b.Write(m.Data)
	}
	return b.Bytes()
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
