package wirejson

import (
	"io"
	"math"
)

// defaultMaxEventBytes bounds one event when Options.MaxEventBytes is 0:
// the API server's largest object (about 1.5 MiB) with room to spare.
const defaultMaxEventBytes = 16 << 20

// maxDepth is encoding/json's nesting limit, the event envelope included.
const maxDepth = 10000

const (
	initialBuffer = 32 << 10
	minRead       = 4 << 10
	// shrinkAbove: buffers grown past this many bytes for a large event
	// are given back at the next event.
	shrinkAbove = 1 << 20
)

// Options configure a Decoder; the zero value decodes everything with
// defaultMaxEventBytes (16 MiB).
type Options struct {
	// DropManagedFields skips object.metadata.managedFields (still
	// checked) instead of building it.
	DropManagedFields bool
	// ManagedFieldsRaw (without DropManagedFields) keeps
	// object.metadata.managedFields as its JSON text, a string (checked
	// as skipped values are), rather than the maps it would build: one
	// copy, read in place by whoever needs it.
	ManagedFieldsRaw bool
	// MaxEventBytes bounds one event, whitespace before it excluded; 0 is
	// defaultMaxEventBytes (16 MiB).
	MaxEventBytes int
}

// Event is one watch event, as metav1.WatchEvent with the object decoded.
// A member absent from the event (or null) leaves its field zero.
type Event struct {
	Type   string
	Object map[string]any
}

// Decoder reads watch events from a stream.
type Decoder struct {
	r    io.Reader
	drop bool
	raw  bool // ManagedFieldsRaw
	max  int

	buf      []byte
	pos, end int   // buf[pos:end] is read and not yet decoded
	evStart  int   // the current event starts at buf[evStart]
	base     int64 // stream offset of buf[0]
	rerr     error // the reader's error, once it returned one
	err      error // a sticky decoding error
	saved    error // the first ValueError of the current event
	depth    int

	kvs     []member // members of the objects being decoded, innermost last
	vals    []any    // elements of the arrays being decoded, innermost last
	scratch []byte   // unescaped strings
	keys    internTable
	strs    valueTable
}

type member struct {
	k string
	v any
}

// NewDecoder returns a Decoder reading r.
func NewDecoder(r io.Reader, opts Options) *Decoder {
	limit := opts.MaxEventBytes
	if limit <= 0 {
		limit = defaultMaxEventBytes
	}
	// No buffer gets near this, and the positions derived from the limit
	// (evStart+max, max+minRead) must not overflow.
	limit = min(limit, math.MaxInt/4)
	return &Decoder{r: r, drop: opts.DropManagedFields, raw: opts.ManagedFieldsRaw && !opts.DropManagedFields, max: limit}
}

// Decode reads the next event into ev (reset first). It returns io.EOF
// when the stream ends between events, io.ErrUnexpectedEOF when it ends
// inside one, the reader's error unchanged, a *SyntaxError or an error
// wrapping ErrEventTooLarge after which the stream cannot be read on, or a
// *ValueError for an event of the wrong shape, after which it can.
func (d *Decoder) Decode(ev *Event) error {
	*ev = Event{}
	if d.err != nil {
		return d.err
	}
	d.saved = nil
	d.depth = 0
	if cap(d.scratch) > shrinkAbove {
		d.scratch = nil
	}
	if cap(d.kvs) > shrinkAbove/32 {
		d.kvs = nil
	}
	if cap(d.vals) > shrinkAbove/16 {
		d.vals = nil
	}
	if len(d.buf) > shrinkAbove && d.end-d.pos <= initialBuffer/2 {
		nb := make([]byte, initialBuffer)
		n := copy(nb, d.buf[d.pos:d.end])
		d.base += int64(d.pos)
		d.buf, d.pos, d.end = nb, 0, n
	}
	c, err := d.start()
	if err != nil {
		d.err = err
		return err
	}
	if err := d.event(ev, c); err != nil {
		*ev = Event{}
		clear(d.kvs)
		clear(d.vals)
		d.kvs, d.vals = d.kvs[:0], d.vals[:0]
		d.err = err
		return err
	}
	if d.saved != nil {
		*ev = Event{}
		return d.saved
	}
	return nil
}

// Raw returns the bytes of the event Decode last returned; they are valid
// until the next call of Decode.
func (d *Decoder) Raw() []byte { return d.buf[d.evStart:d.pos] }

// offset is the stream offset of the read position.
func (d *Decoder) offset() int64 { return d.base + int64(d.pos) }

// fill reads more input, keeping the current event (buf[evStart:end]) in
// the buffer. It returns how far the kept bytes moved towards the start of
// the buffer, so that callers holding positions can follow them.
func (d *Decoder) fill() (shift int, err error) {
	if d.rerr != nil {
		return 0, d.eofErr()
	}
	if d.end-d.evStart >= d.max {
		return 0, &tooLargeError{Limit: d.max, Offset: d.base + int64(d.evStart)}
	}
	if len(d.buf)-d.end < minRead {
		if d.evStart > 0 {
			shift = d.evStart
			copy(d.buf, d.buf[shift:d.end])
			d.end -= shift
			d.pos -= shift
			d.evStart = 0
			d.base += int64(shift)
		}
		if len(d.buf)-d.end < minRead {
			n := max(2*len(d.buf), initialBuffer)
			n = max(min(n, d.max+minRead), d.end+minRead)
			nb := make([]byte, n)
			copy(nb, d.buf[:d.end])
			d.buf = nb
		}
	}
	stop := len(d.buf)
	if l := d.evStart + d.max; l < stop {
		// Read no more than the limit allows: an event that needs more
		// than this is too large (checked above at the next fill).
		stop = l
	}
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:stop])
		d.end += n
		if err != nil {
			d.rerr = err
		}
		if n > 0 {
			return shift, nil
		}
		if err != nil {
			return shift, d.eofErr()
		}
	}
	d.rerr = io.ErrNoProgress
	return shift, d.rerr
}

// ws skips whitespace and returns the byte after it, which it does not
// consume.
func (d *Decoder) ws() (byte, error) {
	if d.pos < d.end {
		if c := d.buf[d.pos]; c > ' ' {
			return c, nil
		}
	}
	return d.wsSlow()
}

func (d *Decoder) wsSlow() (byte, error) {
	for {
		for d.pos < d.end {
			c := d.buf[d.pos]
			if c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
				return c, nil
			}
			d.pos++
		}
		if _, err := d.fill(); err != nil {
			return 0, err
		}
	}
}

// start skips the whitespace before an event, which is not kept, and
// returns the event's first byte; io.EOF when the stream ends first.
func (d *Decoder) start() (byte, error) {
	for {
		for d.pos < d.end {
			c := d.buf[d.pos]
			if c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
				d.evStart = d.pos
				return c, nil
			}
			d.pos++
		}
		d.evStart = d.pos
		if _, err := d.fill(); err != nil {
			if d.rerr == io.EOF {
				return 0, io.EOF
			}
			return 0, err
		}
	}
}

// peek returns the byte at the read position, reading more if needed.
func (d *Decoder) peek() (byte, error) {
	for d.pos >= d.end {
		if _, err := d.fill(); err != nil {
			return 0, err
		}
	}
	return d.buf[d.pos], nil
}
