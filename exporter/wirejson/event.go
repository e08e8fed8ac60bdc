package wirejson

// Where an object sits in the event decides what is done with its members.
const (
	inValue    = iota // anywhere else
	inObject          // the event's object: its metadata is inMetadata
	inMetadata        // object.metadata: managedFields may be skipped
)

// event decodes one event whose first byte, c, is at the read position,
// as kjson decodes it into struct{Type string; Object map[string]any}:
// members other than type and object are checked and ignored, a null
// member leaves its field alone, and repeated object members fill the same
// map.
func (d *Decoder) event(ev *Event, c byte) error {
	switch c {
	case '{':
	case 'n':
		return d.literal("null") // an empty event
	default:
		if c == '[' || c == '"' || c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9') {
			return &SyntaxError{Msg: "watch event is not a JSON object", Offset: d.offset()}
		}
		return d.syntaxErr(c, "looking for beginning of value")
	}
	d.pos++
	d.depth = 1
	c, err := d.ws()
	if err != nil {
		return err
	}
	if c == '}' {
		d.pos++
		return nil
	}
	for {
		if c != '"' {
			return d.syntaxErr(c, "looking for beginning of object key string")
		}
		key, err := d.key()
		if err != nil {
			return err
		}
		if c, err = d.colon(); err != nil {
			return err
		}
		off := d.offset()
		switch {
		case key == "type" && c == '"':
			s, err := d.key() // interned like a key: a handful of values
			if err != nil {
				return err
			}
			ev.Type = s
		case key == "object" && c == '{':
			m, err := d.object(inObject, ev.Object)
			if err != nil {
				return err
			}
			ev.Object = m
		case (key == "type" || key == "object") && c == 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
			if key == "object" {
				ev.Object = nil
			}
		case key == "type" || key == "object":
			if err := d.skip(c, false); err != nil {
				return err
			}
			d.saveValueErr("watch event member "+key+" has the wrong type", off)
		default:
			if err := d.skip(c, false); err != nil {
				return err
			}
		}
		more := false
		if c, more, err = d.next('}', "after object key:value pair"); err != nil || !more {
			return err
		}
	}
}

// next reads what follows a member or element: a ',' (consumed, with the
// whitespace after it; more reports the next value's first byte in c) or
// the closing byte (consumed, and the depth left; more is false).
func (d *Decoder) next(closing byte, what string) (c byte, more bool, err error) {
	if c, err = d.ws(); err != nil {
		return c, false, err
	}
	switch c {
	case ',':
		d.pos++
		c, err = d.ws()
		return c, err == nil, err
	case closing:
		d.pos++
		d.depth--
		return c, false, nil
	}
	return c, false, d.syntaxErr(c, what)
}

// colon consumes the ':' after a key and the whitespace after it, and
// returns the value's first byte.
func (d *Decoder) colon() (byte, error) {
	c, err := d.ws()
	if err != nil {
		return 0, err
	}
	if c != ':' {
		return 0, d.syntaxErr(c, "after object key")
	}
	d.pos++
	return d.ws()
}

// literal consumes lit (true, false or null), whose first byte is at the
// read position.
func (d *Decoder) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c != lit[i] {
			return d.syntaxErr(c, "in literal "+lit+" (expecting "+quoteChar(lit[i])+")")
		}
		d.pos++
	}
	return nil
}
