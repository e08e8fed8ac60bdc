package wirejson

// value decodes the value whose first byte, c, is at the read position.
func (d *Decoder) value(c byte) (any, error) {
	switch c {
	case '"':
		return d.strValue()
	case '{':
		m, err := d.object(inValue, nil)
		if m == nil {
			return nil, err // not a nil map in an interface
		}
		return m, err
	case '[':
		a, err := d.array()
		if a == nil {
			return nil, err
		}
		return a, err
	case 't':
		if d.pos+4 <= d.end && string(d.buf[d.pos:d.pos+4]) == "true" {
			d.pos += 4
			return true, nil
		}
		return true, d.literal("true")
	case 'f':
		if d.pos+5 <= d.end && string(d.buf[d.pos:d.pos+5]) == "false" {
			d.pos += 5
			return false, nil
		}
		return false, d.literal("false")
	case 'n':
		if d.pos+4 <= d.end && string(d.buf[d.pos:d.pos+4]) == "null" {
			d.pos += 4
			return nil, nil
		}
		return nil, d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return nil, d.syntaxErr(c, "looking for beginning of value")
	}
}

// push enters an object or array (its opening byte at the read position).
func (d *Decoder) push() error {
	d.depth++
	if d.depth > maxDepth {
		return &SyntaxError{Msg: "exceeded max depth", Offset: d.offset()}
	}
	d.pos++
	return nil
}

// object decodes the object at the read position. Its members go into into
// when that is not nil (a repeated event object), else into a new map
// sized for them. where is the object's place in the event.
func (d *Decoder) object(where int, into map[string]any) (map[string]any, error) {
	if err := d.push(); err != nil {
		return nil, err
	}
	base := len(d.kvs)
	c, err := d.ws()
	if err != nil {
		return nil, err
	}
	if c != '}' {
		for {
			if c != '"' {
				return nil, d.syntaxErr(c, "looking for beginning of object key string")
			}
			key, err := d.key()
			if err != nil {
				return nil, err
			}
			if c, err = d.colon(); err != nil {
				return nil, err
			}
			switch {
			case where == inMetadata && d.drop && key == "managedFields":
				if err := d.skip(c, true); err != nil {
					return nil, err
				}
			case where == inMetadata && d.raw && key == "managedFields":
				// Its text, as it came: the start is kept relative to the
				// event's, which buffer refills move together.
				from := d.pos - d.evStart
				if err := d.skip(c, true); err != nil {
					return nil, err
				}
				d.kvs = append(d.kvs, member{key, string(d.buf[d.evStart+from : d.pos])})
			case where == inObject && c == '{' && key == "metadata":
				m, err := d.object(inMetadata, nil)
				if err != nil {
					return nil, err
				}
				d.kvs = append(d.kvs, member{key, m})
			default:
				v, err := d.value(c)
				if err != nil {
					return nil, err
				}
				d.kvs = append(d.kvs, member{key, v})
			}
			more := false
			if c, more, err = d.next('}', "after object key:value pair"); err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	} else {
		d.pos++ // '}'
		d.depth--
	}
	m := into
	if m == nil {
		m = make(map[string]any, len(d.kvs)-base)
	}
	for _, kv := range d.kvs[base:] {
		m[kv.k] = kv.v
	}
	clear(d.kvs[base:]) // let the values go
	d.kvs = d.kvs[:base]
	return m, nil
}

// array decodes the array at the read position.
func (d *Decoder) array() ([]any, error) {
	if err := d.push(); err != nil {
		return nil, err
	}
	base := len(d.vals)
	c, err := d.ws()
	if err != nil {
		return nil, err
	}
	if c != ']' {
		for {
			v, err := d.value(c)
			if err != nil {
				return nil, err
			}
			d.vals = append(d.vals, v)
			more := false
			if c, more, err = d.next(']', "after array element"); err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	} else {
		d.pos++ // ']'
		d.depth--
	}
	a := make([]any, len(d.vals)-base)
	copy(a, d.vals[base:])
	clear(d.vals[base:])
	d.vals = d.vals[:base]
	return a, nil
}
