package wirejson

import (
	"errors"
	"fmt"
	"io"
)

// SyntaxError is input that is not JSON, or not a watch stream this
// decoder accepts (nested too deep, an event that is not an object). The
// stream cannot be read past it.
type SyntaxError struct {
	Msg    string
	Offset int64 // byte offset in the stream
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("wirejson: %s at offset %d", e.Msg, e.Offset)
}

// ValueError is a well-formed event of the wrong shape (a type that is not
// a string, an object that is not an object, a number beyond float64). The
// decoder stays in step with the stream.
type ValueError struct {
	Msg    string
	Offset int64 // byte offset in the stream
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("wirejson: %s at offset %d", e.Msg, e.Offset)
}

// ErrEventTooLarge is what the error for an event larger than
// Options.MaxEventBytes (a *tooLargeError) wraps.
var ErrEventTooLarge = errors.New("watch event too large")

// tooLargeError is an event larger than Options.MaxEventBytes. The stream
// cannot be read past it.
type tooLargeError struct {
	Limit  int
	Offset int64 // where the event starts
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("wirejson: watch event at offset %d exceeds %d bytes", e.Offset, e.Limit)
}

func (e *tooLargeError) Unwrap() error { return ErrEventTooLarge }

// syntaxErr reports c at the read position.
func (d *Decoder) syntaxErr(c byte, context string) error {
	return &SyntaxError{Msg: "invalid character " + quoteChar(c) + " " + context, Offset: d.offset()}
}

func (d *Decoder) saveValueErr(msg string, off int64) {
	if d.saved == nil {
		d.saved = &ValueError{Msg: msg, Offset: off}
	}
}

// eofErr is the error for input that ended (or failed) inside an event.
func (d *Decoder) eofErr() error {
	if d.rerr == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return d.rerr
}

// quoteChar formats c as encoding/json's errors do.
func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := fmt.Sprintf("%q", string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}
