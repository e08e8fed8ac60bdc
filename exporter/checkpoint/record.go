package checkpoint

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/jsonpatch"
)

// recordFormat is the format of the records this version writes:
//
//	absent (1): written before kubefeed redacted checkpoints; the state
//	            may hold values its rule redacts. Restored, then rewritten.
//	2:          the state is what the rule allowed to send (redacted).
const recordFormat = 2

// stored is a record as written to a backend.
type stored struct {
	Format int    `json:"f,omitempty"`
	UID    string `json:"u"`
	RV     string `json:"v"`
	Scope  string `json:"s,omitempty"`
	State  []byte `json:"o,omitempty"` // gzip of the object's JSON
	// Provisional: written before the added event was sent.
	Provisional bool `json:"p,omitempty"`
	// Deleting: written before the deletion was sent; RV and State are
	// the final state it carries.
	Deleting bool `json:"d,omitempty"`
	// The change sent after this record was written (exporter.Sent): its
	// version, when it was first observed (unix nanoseconds) and its
	// recovered mark.
	SentRV        string `json:"sv,omitempty"`
	SentTime      int64  `json:"st,omitempty"`
	SentRecovered bool   `json:"sr,omitempty"`
	// A modification's patch and changed paths, as sent (redacted).
	SentPatch json.RawMessage `json:"sp,omitempty"`
	SentPaths []string        `json:"sc,omitempty"`
}

// keyString encodes a key as "group/version/resource/namespace/name".
func keyString(k state.Key) string {
	return k.GVR.Group + "/" + k.GVR.Version + "/" + k.GVR.Resource + "/" + k.Namespace + "/" + k.Name
}

func parseKey(s string) (state.Key, error) {
	p := strings.SplitN(s, "/", 5)
	if len(p) != 5 {
		return state.Key{}, fmt.Errorf("bad checkpoint key %q", s)
	}
	return state.Key{GVR: schema.GroupVersionResource{Group: p[0], Version: p[1], Resource: p[2]}, Namespace: p[3], Name: p[4]}, nil
}

// gzipWriters are reused: a new flate compressor allocates about a
// megabyte of tables, per record written.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return zw
}}

// encodeRecord returns what is kept at rest for r: its uid, version and
// scope, and with keepState its state as its rule redacts it
// (r.Redact.Object), never the raw one.
func encodeRecord(r state.Record, keepState bool) ([]byte, error) {
	s := stored{Format: recordFormat, UID: r.UID, RV: r.ResourceVersion, Scope: r.Scope, Provisional: r.Provisional, Deleting: r.Deleting}
	if r.Sent != nil {
		s.SentRV, s.SentTime, s.SentRecovered = r.Sent.ResourceVersion, r.Sent.Time.UnixNano(), r.Sent.Recovered
		if r.Sent.Patch != nil {
			p, err := json.Marshal(r.Sent.Patch)
			if err != nil {
				return nil, fmt.Errorf("encode checkpoint patch: %w", err)
			}
			s.SentPatch, s.SentPaths = p, r.Sent.ChangedPaths
		}
	}
	if keepState && r.Object != nil {
		obj := r.Object.Object
		if r.Redact != nil {
			obj = r.Redact.Object(obj)
		}
		var buf bytes.Buffer
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(&buf)
		err := json.NewEncoder(zw).Encode(obj)
		if err == nil {
			err = zw.Close()
		}
		gzipWriters.Put(zw)
		if err != nil {
			return nil, fmt.Errorf("encode checkpoint state: %w", err)
		}
		s.State = buf.Bytes()
	}
	return json.Marshal(s)
}

// decodeRecord reads a stored record; legacy reports one of format 1, whose
// state may hold redacted values. Numbers in the state decode as
// apimachinery's unstructured decoder does (int64 when integral, else
// float64), so that a restored object equals the cached one.
func decodeRecord(b []byte) (r state.Record, legacy bool, err error) {
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return state.Record{}, false, fmt.Errorf("bad checkpoint record: %w", err)
	}
	if s.Format > recordFormat {
		return state.Record{}, false, fmt.Errorf("checkpoint record format %d is newer than this kubefeed's (%d)", s.Format, recordFormat)
	}
	r = state.Record{UID: s.UID, ResourceVersion: s.RV, Scope: s.Scope, Provisional: s.Provisional, Deleting: s.Deleting}
	if s.SentRV != "" {
		r.Sent = &state.Sent{ResourceVersion: s.SentRV, Time: time.Unix(0, s.SentTime).UTC(), Recovered: s.SentRecovered, ChangedPaths: s.SentPaths}
		if len(s.SentPatch) > 0 {
			if err := json.Unmarshal(s.SentPatch, &r.Sent.Patch); err != nil {
				return state.Record{}, false, fmt.Errorf("bad checkpoint patch: %w", err)
			}
			if r.Sent.Patch == nil {
				r.Sent.Patch = []jsonpatch.Op{}
			}
		}
	}
	if len(s.State) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(s.State))
		if err != nil {
			return state.Record{}, false, fmt.Errorf("bad checkpoint state: %w", err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			return state.Record{}, false, fmt.Errorf("bad checkpoint state: %w", err)
		}
		obj := map[string]any{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return state.Record{}, false, fmt.Errorf("bad checkpoint state: %w", err)
		}
		if obj != nil { // "null": no state
			r.Object = &unstructured.Unstructured{Object: obj}
			r.AtRest = true
		}
	}
	return r, s.Format == 0, nil
}
