package checkpoint

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/exporter"
)

// stored is a record as written to a backend.
type stored struct {
	UID   string `json:"u"`
	RV    string `json:"v"`
	Scope string `json:"s,omitempty"`
	State []byte `json:"o,omitempty"` // gzip of the object's JSON
}

// keyString encodes a key as "group/version/resource/namespace/name".
func keyString(k exporter.Key) string {
	return k.GVR.Group + "/" + k.GVR.Version + "/" + k.GVR.Resource + "/" + k.Namespace + "/" + k.Name
}

func parseKey(s string) (exporter.Key, error) {
	p := strings.SplitN(s, "/", 5)
	if len(p) != 5 {
		return exporter.Key{}, fmt.Errorf("bad checkpoint key %q", s)
	}
	return exporter.Key{GVR: schema.GroupVersionResource{Group: p[0], Version: p[1], Resource: p[2]}, Namespace: p[3], Name: p[4]}, nil
}

func encodeRecord(r exporter.Record, keepState bool) ([]byte, error) {
	s := stored{UID: r.UID, RV: r.ResourceVersion, Scope: r.Scope}
	if keepState && r.Object != nil {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if err := json.NewEncoder(zw).Encode(r.Object.Object); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		s.State = buf.Bytes()
	}
	return json.Marshal(s)
}

func decodeRecord(b []byte) (exporter.Record, error) {
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return exporter.Record{}, fmt.Errorf("bad checkpoint record: %w", err)
	}
	r := exporter.Record{UID: s.UID, ResourceVersion: s.RV, Scope: s.Scope}
	if len(s.State) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(s.State))
		if err != nil {
			return exporter.Record{}, fmt.Errorf("bad checkpoint state: %w", err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			return exporter.Record{}, fmt.Errorf("bad checkpoint state: %w", err)
		}
		obj := map[string]any{}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return exporter.Record{}, fmt.Errorf("bad checkpoint state: %w", err)
		}
		r.Object = &unstructured.Unstructured{Object: obj}
	}
	return r, nil
}
