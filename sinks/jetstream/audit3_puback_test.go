package jetstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// TestAudit3AckOutcomes: what one publish response means for its event.
// Only a PubAck naming the configured stream, without an error, is
// success; everything else fails retryably.
func TestAudit3AckOutcomes(t *testing.T) {
	for _, c := range []struct {
		name, data, status string
		ok                 bool
	}{
		{"stored", `{"stream":"KUBEFEED","seq":1}`, "", true},
		{"duplicate", `{"stream":"KUBEFEED","seq":1,"duplicate":true}`, "", true},
		{"seq beyond 2^53", `{"stream":"KUBEFEED","seq":9007199254740993}`, "", true},
		{"unknown members skipped", `{"domain":"hub","stream":"KUBEFEED","seq":1,"x":[1,{"y":null}],"batch":"b"}`, "", true},
		{"503 in the body", `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, "", false},
		{"error with a stream", `{"stream":"KUBEFEED","seq":7,"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}`, "", false},
		{"error after the stream", `{"stream":"KUBEFEED","seq":7,"duplicate":false,"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`, "", false},
		{"empty error object", `{"stream":"KUBEFEED","seq":1,"error":{}}`, "", false},
		{"null error", `{"stream":"KUBEFEED","seq":1,"error":null}`, "", false},
		{"another stream stored it", `{"stream":"OTHER","seq":1}`, "", false},
		{"stream named with an escape", `{"stream":"KUBEFEE\u0044","seq":1}`, "", true},
		{"empty stream", `{"stream":"","seq":1}`, "", false},
		{"seq overflows", `{"stream":"KUBEFEED","seq":18446744073709551616}`, "", false},
		{"negative seq", `{"stream":"KUBEFEED","seq":-1}`, "", false},
		{"duplicate as a string", `{"stream":"KUBEFEED","seq":1,"duplicate":"true"}`, "", false},
		{"two documents", `{"stream":"KUBEFEED","seq":1}{"stream":"KUBEFEED","seq":2}`, "", false},
		{"truncated", `{"stream":"KUBEFEED","seq":1`, "", false},
		{"backslash at the end", `{"stream":"KUBEFEED\`, "", false},
		{"null", `null`, "", false},
		{"no responders", ``, "503", false},
		{"request timeout status", ``, "408", false},
		{"empty", ``, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAcker("_INBOX.t", "KUBEFEED", time.Second, 4, func(int) {}, func() {})
			m := &nats.Msg{Subject: "_INBOX.t.0", Data: []byte(c.data), Header: nats.Header{}}
			if c.status != "" {
				m.Header.Set("Status", c.status)
			}
			err := a.outcome(m, pending{id: "e1", subject: "kubefeed.test.e1"})
			switch {
			case c.ok && err != nil:
				t.Fatalf("%s: %v, want success", c.data, err)
			case !c.ok && err == nil:
				t.Fatalf("%s taken as success", c.data)
			case err != nil && (sinks.IsPermanent(err) || !strings.Contains(err.Error(), "e1")):
				t.Fatalf("%s: %v, want a retryable error naming e1", c.data, err)
			}
		})
	}
}

// TestAudit3AckFromAnotherStream: the configured stream was deleted and
// another stream now holds the subjects. The sink must not report the
// events as delivered to stream KUBEFEED: they are not in it.
func TestAudit3AckFromAnotherStream(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, js := sentThenStreamDeleted(ctx, t, srv.URL(), false)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"kubefeed.>"}}); err != nil {
		t.Fatal(err)
	}
	err := s.Send(ctx, []*event.Event{sinktest.Event(2, 1)})
	if err == nil {
		t.Fatal("send succeeded although stream KUBEFEED does not exist (stream OTHER took the event)")
	}
	if sinks.IsPermanent(err) || !strings.Contains(err.Error(), "OTHER") || !strings.Contains(err.Error(), "KUBEFEED") {
		t.Errorf("send: %v, want a retryable error naming both streams", err)
	}
	// The stream is checked again: it is missing (no provision).
	if err := s.Send(ctx, []*event.Event{sinktest.Event(2, 1)}); err == nil || !strings.Contains(err.Error(), "stream KUBEFEED not found") {
		t.Errorf("second send: %v, want stream KUBEFEED not found", err)
	}
}
