package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// A Secret with known values goes through kubefeed with a file checkpoint
// and with a JetStream KV checkpoint. After a clean stop, neither the
// values nor their base64 are anywhere in the checkpoint: not in the raw
// bytes (the bbolt file, the KV stream's messages), not in any record's
// decompressed state. The records still hold a (redacted) state, and a
// change of the Secret made while kubefeed was down arrives after the
// restart as a recovered, redacted modified event.
func TestSecretValuesNeverAtRest(t *testing.T) {
	for _, backend := range []string{"file", "kv"} {
		t.Run(backend, func(t *testing.T) {
			ns := namespace(t, "atrest-"+backend, nil)
			dir := t.TempDir()
			rules := fmt.Sprintf("  - {resource: secrets, namespaces: [%s]}\n", ns)
			var cfgText string
			var scan func() (raw []byte, recs []atRest)
			switch backend {
			case "file":
				cfgText = fileCheckpointConfig(dir, rules)
				path := filepath.Join(dir, "checkpoint.db")
				scan = func() ([]byte, []atRest) { return fileBytes(t, path), boltRecords(t, path) }
			case "kv":
				srv := natstest.StartT(t, natstest.Options{})
				cfgText = strings.Replace(fileCheckpointConfig(dir, rules), fmt.Sprintf("  file: {path: %s/checkpoint.db}\n", dir),
					fmt.Sprintf("  jetstream: {servers: [%s], bucket: atrest}\n", srv.URL()), 1)
				scan = func() ([]byte, []atRest) {
					return kvRawBytes(t, srv.URL(), "atrest"), kvRecords(t, srv.URL(), "atrest")
				}
			}
			secretAtRest(t, ns, dir, writeFile(t, "c.yaml", cfgText), scan)
		})
	}
}

func secretAtRest(t *testing.T, ns, dir, cfg string, scan func() ([]byte, []atRest)) {
	const v1, v2, v3 = "s3cr3t-VALUE-1234", "s3cr3t-VALUE-5678", "s3cr3t-VALUE-9012"
	events := filepath.Join(dir, "events.jsonl")
	cs, _ := clients(t)
	secrets := cs.CoreV1().Secrets(ns)
	ctx := context.Background()
	setPassword := func(v string) {
		t.Helper()
		patch := fmt.Sprintf(`{"data":{"password":%q}}`, base64.StdEncoding.EncodeToString([]byte(v)))
		if _, err := secrets.Patch(ctx, "db", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// check fails if any of the values, plain or base64, is at rest.
	check := func(when string, values ...string) {
		t.Helper()
		raw, recs := scan()
		var states int
		for _, r := range recs {
			if r.hasState && bytes.Contains(r.state, []byte(`"kind":"Secret"`)) {
				states++
				if r.format != 2 {
					t.Errorf("%s: record %s has format %d, want 2 (redacted)", when, r.key, r.format)
				}
				var obj struct{ Data map[string]any }
				if err := jsonUnmarshal(r.state, &obj); err != nil || obj.Data["password"] != "<redacted>" || obj.Data["user"] != "<redacted>" {
					t.Errorf("%s: record %s state is not the redacted Secret (%v): %s", when, r.key, err, r.state)
				}
			}
			for _, v := range values {
				for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
					if bytes.Contains(r.state, []byte(form)) || bytes.Contains(r.raw, []byte(form)) {
						t.Errorf("%s: checkpoint record %s holds %q: %s", when, r.key, form, r.state)
					}
				}
			}
		}
		for _, v := range values {
			for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
				if bytes.Contains(raw, []byte(form)) {
					t.Errorf("%s: the checkpoint's raw bytes hold %q", when, form)
				}
			}
		}
		// Otherwise the scan proves nothing: the Secret's record is there,
		// with its (redacted) state as the patch base.
		if states != 1 {
			t.Errorf("%s: %d records with a Secret's state, want 1 (of %d records)", when, states, len(recs))
		}
	}

	p := startKubefeedReady(t, cfg)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Data: map[string][]byte{"password": []byte(v1), "user": []byte("admin")}}
	if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Delivered before it changes: a change made while the add is still
	// queued merges into it (one added event at the new version).
	waitFileEvents(t, events, "added db", func(evs []got) bool { return has(evs, "added", "db") })
	setPassword(v2)
	waitFileEvents(t, events, "added and modified db", func(evs []got) bool { return has(evs, "added", "db") && has(evs, "modified", "db") })
	if code := p.term(time.Minute); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}
	check("after a clean stop", v1, v2)

	// Changed while kubefeed is down: the restart recovers it.
	setPassword(v3)
	before := len(fileEvents(t, events))
	p = startKubefeedReady(t, cfg)
	evs := waitFileEvents(t, events, "a recovered modified event for db", func(evs []got) bool {
		return len(evs) > before && has(evs[before:], "modified", "db")
	})
	var mod *got
	for i := range evs[before:] {
		if e := &evs[before+i]; e.change() == "modified" && e.Name == "db" {
			mod = e
		}
	}
	if !mod.Data.Recovered {
		t.Errorf("modified event after the restart not marked recovered: %s", mod.raw)
	}
	// The checkpoint keeps no trace of redacted values, so kubefeed can
	// tell that the version changed but not which redacted value did: the
	// recovered event carries the new version with an empty patch, and
	// never claims that an unchanged value (/data/user) rotated.
	if len(mod.Data.Patch) != 0 || len(mod.Data.ChangedPaths) != 0 {
		t.Errorf("recovered modified event: patch %v, changedPaths %v, want both empty", mod.Data.Patch, mod.Data.ChangedPaths)
	}
	if evs[before].Type != "io.kubefeed.gap" {
		t.Errorf("first event after the restart is %s, want a restart gap marker", evs[before].Type)
	}
	for _, e := range evs {
		for _, v := range []string{v1, v2, v3} {
			if bytes.Contains(e.raw, []byte(v)) || bytes.Contains(e.raw, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
				t.Errorf("event holds a secret value: %s", e.raw)
			}
		}
	}
	if code := p.term(time.Minute); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}
	check("after the restart", v1, v2, v3)
}
