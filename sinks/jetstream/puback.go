package jetstream

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// pubAck is what the sink reads of a JetStream publish response:
//
//	{"stream":"KUBEFEED","seq":42,"duplicate":true}
//	{"error":{"code":503,"err_code":10077,"description":"..."}}
type pubAck struct {
	stored    bool // a stream was named: the message is stored
	stream    string
	seq       uint64
	duplicate bool
	apiErr    *jetstream.APIError
}

// pubAckResponse is nats.go's own (jetstream/publish.go): an API
// response, whose error is set when the publish failed, and a PubAck.
type pubAckResponse struct {
	Type  string         `json:"type"`
	Error apiErrorMember `json:"error"`
	*jetstream.PubAck
}

// apiErrorMember decodes the error member into nats.go's *APIError, but
// unlike nats.go takes "error":null for a bad response, not for success
// (the server leaves the member out when there is no error).
type apiErrorMember struct{ err *jetstream.APIError }

func (m *apiErrorMember) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return errors.New("error member is null")
	}
	m.err = new(jetstream.APIError)
	return json.Unmarshal(b, m.err)
}

var errAck = errors.New("bad publish response")

// parsePubAck decodes a publish response as nats.go does. Anything that
// is not one JSON object of that shape is an error wrapping errAck.
// BenchmarkPubAck: about 0.6 µs an ack, against tens of µs an event.
func parsePubAck(b []byte) (pubAck, error) {
	var r pubAckResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return pubAck{}, fmt.Errorf("%w: %v", errAck, err)
	}
	ack := pubAck{apiErr: r.Error.err}
	if r.PubAck != nil {
		ack.stored, ack.stream = r.Stream != "", r.Stream
		ack.seq, ack.duplicate = r.Sequence, r.Duplicate
	}
	return ack, nil
}
