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

// parsePubAck reads a publish response without reflection (it runs once
// per event). Members it does not know are skipped; anything that is not
// one JSON object is an error naming the offset.
func parsePubAck(b []byte) (pubAck, error) {
	var ack pubAck
	r := ackReader{b: b}
	err := r.object(func(key []byte) error {
		switch string(key) {
		case "stream":
			s, err := r.str()
			ack.stored, ack.stream = len(s) > 0, string(s)
			return err
		case "seq":
			n, err := r.uint()
			ack.seq = n
			return err
		case "duplicate":
			v, err := r.boolean()
			ack.duplicate = v
			return err
		case "error":
			ack.apiErr = &jetstream.APIError{}
			return r.apiError(ack.apiErr)
		}
		return r.skip(0)
	})
	if err == nil {
		r.space()
		if r.i != len(b) {
			err = r.fail("data after the object")
		}
	}
	return ack, err
}

// ackReader scans one JSON document.
type ackReader struct {
	b []byte
	i int
}

var errAck = errors.New("bad publish response")

func (r *ackReader) fail(what string) error {
	return fmt.Errorf("%w at offset %d: %s", errAck, r.i, what)
}

func (r *ackReader) space() {
	for r.i < len(r.b) && (r.b[r.i] == ' ' || r.b[r.i] == '\t' || r.b[r.i] == '\n' || r.b[r.i] == '\r') {
		r.i++
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (r *ackReader) peek() byte {
	r.space()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *ackReader) expect(c byte) error {
	if r.peek() != c {
		return r.fail(fmt.Sprintf("want %q", c))
	}
	r.i++
	return nil
}

// object reads {"key": value, ...}, calling member at each value.
func (r *ackReader) object(member func(key []byte) error) error {
	if err := r.expect('{'); err != nil {
		return err
	}
	if r.peek() == '}' {
		r.i++
		return nil
	}
	for {
		key, err := r.str()
		if err != nil {
			return err
		}
		if err := r.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return nil
		default:
			return r.fail("want ',' or '}'")
		}
	}
}

// str reads a string; the result is raw (escapes kept) unless it had
// any, and then decoded.
func (r *ackReader) str() ([]byte, error) {
	if err := r.expect('"'); err != nil {
		return nil, err
	}
	start, escaped := r.i, false
	for r.i < len(r.b) {
		switch c := r.b[r.i]; {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			if escaped {
				var out string
				if err := json.Unmarshal(r.b[start-1:r.i], &out); err != nil {
					return nil, fmt.Errorf("%w at offset %d: %v", errAck, start-1, err)
				}
				return []byte(out), nil
			}
			return s, nil
		case c == '\\':
			escaped = true
			r.i += 2
		case c < 0x20:
			return nil, r.fail("control character in string")
		default:
			r.i++
		}
	}
	return nil, r.fail("unterminated string")
}

func (r *ackReader) uint() (uint64, error) {
	r.space()
	start := r.i
	var n uint64
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		d := uint64(r.b[r.i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, r.fail("number overflows")
		}
		n = n*10 + d
		r.i++
	}
	if r.i == start {
		return 0, r.fail("want an unsigned integer")
	}
	return n, nil
}

func (r *ackReader) boolean() (bool, error) {
	r.space()
	switch {
	case hasPrefix(r.b[r.i:], "true"):
		r.i += 4
		return true, nil
	case hasPrefix(r.b[r.i:], "false"):
		r.i += 5
		return false, nil
	}
	return false, r.fail("want true or false")
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func (r *ackReader) apiError(e *jetstream.APIError) error {
	return r.object(func(key []byte) error {
		switch string(key) {
		case "code":
			n, err := r.uint()
			if n > 1<<31 {
				return r.fail("code out of range")
			}
			e.Code = int(n)
			return err
		case "err_code":
			n, err := r.uint()
			if n > 1<<16-1 {
				return r.fail("err_code out of range")
			}
			e.ErrorCode = jetstream.ErrorCode(n)
			return err
		case "description":
			s, err := r.str()
			e.Description = string(s)
			return err
		}
		return r.skip(0)
	})
}

// skip passes over one value of any kind.
func (r *ackReader) skip(depth int) error {
	if depth > 32 {
		return r.fail("nested too deep")
	}
	switch c := r.peek(); {
	case c == '"':
		_, err := r.str()
		return err
	case c == '{':
		return r.object(func([]byte) error { return r.skip(depth + 1) })
	case c == '[':
		r.i++
		if r.peek() == ']' {
			r.i++
			return nil
		}
		for {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			switch r.peek() {
			case ',':
				r.i++
			case ']':
				r.i++
				return nil
			default:
				return r.fail("want ',' or ']'")
			}
		}
	case c == 't' || c == 'f':
		_, err := r.boolean()
		return err
	case c == 'n':
		if !hasPrefix(r.b[r.i:], "null") {
			return r.fail("want null")
		}
		r.i += 4
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := r.i
		for r.i < len(r.b) && (r.b[r.i] == '-' || r.b[r.i] == '+' || r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E' || (r.b[r.i] >= '0' && r.b[r.i] <= '9')) {
			r.i++
		}
		if !json.Valid(r.b[start:r.i]) {
			r.i = start
			return r.fail("bad number")
		}
		return nil
	}
	return r.fail("want a value")
}
