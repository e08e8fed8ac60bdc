package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event types and the prefix of resource changes (as SPEC.md names them).
const (
	TypeGap    = "io.kubefeed.gap"
	TypePrefix = "io.kubefeed.resource."
)

// Changes an event reports.
const (
	Added    = "added"
	Modified = "modified"
	Deleted  = "deleted"
)

// Event is one kubefeed CloudEvent as a consumer reads it. Data stays raw
// until Apply needs it, decoded with json.Number so no digit is lost.
type Event struct {
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	Cluster         string          `json:"cluster"`
	APIVersion      string          `json:"apiversion"`
	Kind            string          `json:"kind"`
	Resource        string          `json:"resource"`
	Namespace       string          `json:"namespace"`
	Name            string          `json:"name"`
	UID             string          `json:"uid"`
	ResourceVersion string          `json:"resourceversion"`
	Data            json.RawMessage `json:"data"`
}

// Change is added, modified or deleted (snapshot for a snapshot event),
// or "" for a marker or an unknown type. A sink with types: knative names
// the changes as Knative's ApiServerSource does
// (dev.knative.apiserver.resource.add|update|delete): the same changes.
func (e *Event) Change() string {
	if c, ok := strings.CutPrefix(e.Type, TypePrefix); ok {
		return c
	}
	switch e.Type {
	case "dev.knative.apiserver.resource.add":
		return Added
	case "dev.knative.apiserver.resource.update":
		return Modified
	case "dev.knative.apiserver.resource.delete":
		return Deleted
	}
	return ""
}

// Key names the object the event is about.
func (e *Event) Key() Key {
	group := ""
	if i := strings.IndexByte(e.APIVersion, '/'); i >= 0 {
		group = e.APIVersion[:i]
	}
	return Key{Group: group, Resource: e.Resource, Namespace: e.Namespace, Name: e.Name}
}

// Decode parses a structured-mode event (the whole CloudEvent as JSON), as
// the file, stdout and JetStream sinks write it by default.
func Decode(body []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// DecodeBinary parses a binary-mode event: the attributes come from the
// ce-* headers (get returns a header's value, "" when absent; header names
// are asked for in lower case) and body is the data.
func DecodeBinary(get func(name string) string, body []byte) (*Event, error) {
	e := Event{
		ID: get("ce-id"), Source: get("ce-source"), Type: get("ce-type"), Subject: get("ce-subject"),
		Cluster: get("ce-cluster"), APIVersion: get("ce-apiversion"), Kind: get("ce-kind"),
		Resource: get("ce-resource"), Namespace: get("ce-namespace"), Name: get("ce-name"),
		UID: get("ce-uid"), ResourceVersion: get("ce-resourceversion"), Data: json.RawMessage(body),
	}
	if t := get("ce-time"); t != "" {
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return nil, fmt.Errorf("event %s: ce-time %q: %w", e.ID, t, err)
		}
		e.Time = ts
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("event %s: data is not JSON", e.ID)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// check rejects events Apply cannot place.
func (e *Event) check() error {
	if e.ID == "" {
		return errors.New("event without id")
	}
	if e.Type == TypeGap || e.Type == TypeSnapshotStarted || e.Type == TypeSnapshotCompleted {
		return nil
	}
	switch e.Change() {
	case Added, Modified, Deleted, Snapshotted:
	default:
		return fmt.Errorf("event %s: unknown type %q", e.ID, e.Type)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"resource", e.Resource}, {"name", e.Name}, {"uid", e.UID}, {"resourceversion", e.ResourceVersion}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("event %s: missing %s", e.ID, strings.Join(missing, ", "))
	}
	return nil
}

// changeData is data of a resource event.
type changeData struct {
	Object                  map[string]any `json:"object"`
	Patch                   []patchOp      `json:"patch"`
	PreviousResourceVersion string         `json:"previousResourceVersion"`
	Recovered               bool           `json:"recovered"`
	Truncated               string         `json:"truncated"`
}

// patchOp is one RFC 6902 operation; Value is raw so that "value": null and
// an absent value can be told apart.
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	From  string          `json:"from"`
	Value json.RawMessage `json:"value"`
}

// decodeJSON decodes with json.Number: integers beyond 2^53 keep every digit.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
