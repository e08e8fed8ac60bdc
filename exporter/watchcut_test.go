package exporter

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Cutting managedFields gives what parsing and then deleting it gives, and
// touches nothing else, wherever the member sits and whatever surrounds it.
func TestCutManagedFields(t *testing.T) {
	mf := `[{"manager":"kubelet","fieldsV1":{"f:x":{},"f:y\"}]":{}}}]`
	for name, tc := range map[string]struct {
		in  string
		cut bool
	}{
		"middle":          {`{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"a","managedFields":` + mf + `,"uid":"u"},"count":1}}`, true},
		"first":           {`{"type":"ADDED","object":{"metadata":{"managedFields":` + mf + `,"name":"a"},"kind":"Event"}}`, true},
		"last":            {`{"object":{"kind":"Event","metadata":{"name":"a","managedFields":` + mf + `}},"type":"MODIFIED"}`, true},
		"only":            {`{"type":"ADDED","object":{"kind":"Event","metadata":{"managedFields":` + mf + `}}}`, true},
		"spaces":          {"{ \"type\" : \"ADDED\" ,\n \"object\" : { \"kind\":\"Event\" , \"metadata\" : { \"name\" : \"a\" ,\n \"managedFields\" : " + mf + " , \"uid\":\"u\" } } }", true},
		"null":            {`{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"a","managedFields":null}}}`, true},
		"elsewhere only":  {`{"type":"ADDED","object":{"kind":"X","spec":{"managedFields":[1]},"metadata":{"name":"managedFields","labels":{"managedFields":"x"}},"managedFields":2}}`, false},
		"strings":         {`{"type":"ADDED","object":{"kind":"X","note":"}]\"{\\\"metadata\":{","metadata":{"a":"\\\\","managedFields":[],"b":"}"}}}`, true},
		"escaped key":     {`{"type":"ADDED","object":{"kind":"X","metadata":{"managed\u0046ields":[1],"name":"a"}}}`, false},
		"no metadata":     {`{"type":"ERROR","object":{"kind":"Status","code":410}}`, false},
		"no object":       {`{"type":"ADDED"}`, false},
		"object not map":  {`{"type":"ADDED","object":[{"metadata":{"managedFields":[]}}]}`, false},
		"metadata string": {`{"type":"ADDED","object":{"metadata":"managedFields"}}`, false},
		"not an object":   {`[1,2]`, false},
		"empty object":    {`{}`, false},
		"big numbers":     {`{"type":"ADDED","object":{"kind":"X","n":123456789012345678901234567890,"metadata":{"managedFields":[{"t":-1.5e-7}],"resourceVersion":"1"},"f":true}}`, true},
	} {
		t.Run(name, func(t *testing.T) {
			var want map[string]any
			if err := json.Unmarshal([]byte(tc.in), &want); err != nil {
				var anyv any
				if json.Unmarshal([]byte(tc.in), &anyv) != nil {
					t.Fatalf("bad test input: %v", err)
				}
			}
			if o, ok := want["object"].(map[string]any); ok {
				if md, ok := o["metadata"].(map[string]any); ok && tc.cut {
					delete(md, "managedFields")
				}
			}
			out := cutManagedFields([]byte(tc.in))
			if !tc.cut {
				if string(out) != tc.in {
					t.Fatalf("changed:\n%s\n%s", tc.in, out)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("invalid JSON after the cut: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
}

// Truncated input (the frame reader never passes it on) does not panic,
// and is changed only once the object holding managedFields is complete.
func TestCutManagedFieldsMalformed(t *testing.T) {
	full := `{"type":"ADDED","object":{"kind":"Event","metadata":{"name":"a","managedFields":[{"m":"x\"y"}],"uid":"u"},"count":1}}`
	objectEnd := len(full) - 1
	for i := 0; i < len(full); i++ {
		keep := full[:i]
		out := cutManagedFields([]byte(keep))
		if string(out) != keep && i < objectEnd {
			t.Errorf("prefix %d changed: %s", i, out)
		}
	}
}
