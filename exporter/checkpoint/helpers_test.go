package checkpoint

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/filters"
)

// secretValue is what must never rest anywhere.
const secretValue = "hunter2-Sup3r-s3cret-value"

var secretKey = state.Key{GVR: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, Namespace: "shop", Name: "db/creds~1"}

// secret returns a Secret holding secretValue in data, stringData and the
// last-applied annotation.
func secret() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{
			"name": "db/creds~1", "namespace": "shop", "uid": "s1", "resourceVersion": "42",
			"annotations": map[string]any{
				"kubectl.kubernetes.io/last-applied-configuration": `{"stringData":{"token":"` + secretValue + `"}}`,
				"team": "shop",
			},
		},
		"data":       map[string]any{"password": base64.StdEncoding.EncodeToString([]byte(secretValue))},
		"stringData": map[string]any{"token": secretValue},
		"type":       "Opaque",
	}}
}

func secretRecord() state.Record {
	return state.Record{UID: "s1", ResourceVersion: "42", Object: secret(), Scope: "secrets -n shop",
		Redact: filters.NewRedactor(filters.SecretPaths, nil)}
}

// plain returns a stored value with its gzip state decompressed, so that
// a scan sees what rests in clear after compression is undone.
func plain(t *testing.T, v []byte) []byte {
	t.Helper()
	var s stored
	if json.Unmarshal(v, &s) != nil || len(s.State) == 0 {
		return v
	}
	zr, err := gzip.NewReader(bytes.NewReader(s.State))
	if err != nil {
		t.Fatalf("stored state is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(append([]byte(nil), v...), '\n'), raw...)
}

// assertNoSecret fails when b holds secretValue or its base64.
func assertNoSecret(t *testing.T, where string, b []byte) {
	t.Helper()
	for _, needle := range []string{
		secretValue,
		base64.StdEncoding.EncodeToString([]byte(secretValue)),
		base64.RawStdEncoding.EncodeToString([]byte(secretValue)),
		base64.RawURLEncoding.EncodeToString([]byte(secretValue)),
	} {
		if bytes.Contains(b, []byte(needle)) {
			t.Errorf("%s holds the secret (%q)", where, needle)
		}
	}
}

// boltValues returns every value of every bucket of a closed checkpoint
// file, by bucket and key.
func boltValues(t *testing.T, path string) map[string]map[string][]byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string][]byte{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string][]byte{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = append([]byte(nil), v...)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertMode fails unless path has exactly the permission bits perm.
func assertMode(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != perm {
		t.Errorf("%s: mode %o, want %o", path, got, perm)
	}
}

// openAudit opens the checkpoint file at path and its sink "audit".
func openAudit(t *testing.T, path string) (*File, *Store) {
	t.Helper()
	f, err := OpenFile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Store("audit")
	if err != nil {
		t.Fatal(err)
	}
	return f, s
}

// assertFileHoldsNoSecret fails for any value in the file at path that
// holds a value the Secret's rule redacts.
func assertFileHoldsNoSecret(t *testing.T, path string) {
	t.Helper()
	for bucket, kv := range boltValues(t, path) {
		for k, v := range kv {
			assertNoSecret(t, bucket+" "+k, plain(t, v))
		}
	}
}
