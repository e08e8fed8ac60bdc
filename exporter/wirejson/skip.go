package wirejson

// skip checks and consumes the value whose first byte, c, is at the read
// position, building nothing. With numbers, it also reports those that
// encoding/json would fail to decode into an interface (beyond float64).
func (d *Decoder) skip(c byte, numbers bool) error {
	switch c {
	case '"':
		_, _, _, err := d.scanString()
		return err
	case '{':
		if err := d.push(); err != nil {
			return err
		}
		c, err := d.ws()
		if err != nil {
			return err
		}
		if c == '}' {
			d.pos++
			d.depth--
			return nil
		}
		for {
			if c != '"' {
				return d.syntaxErr(c, "looking for beginning of object key string")
			}
			if _, _, _, err := d.scanString(); err != nil {
				return err
			}
			if c, err = d.colon(); err != nil {
				return err
			}
			if err := d.skip(c, numbers); err != nil {
				return err
			}
			more := false
			if c, more, err = d.next('}', "after object key:value pair"); err != nil || !more {
				return err
			}
		}
	case '[':
		if err := d.push(); err != nil {
			return err
		}
		c, err := d.ws()
		if err != nil {
			return err
		}
		if c == ']' {
			d.pos++
			d.depth--
			return nil
		}
		for {
			if err := d.skip(c, numbers); err != nil {
				return err
			}
			more := false
			if c, more, err = d.next(']', "after array element"); err != nil || !more {
				return err
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if c != '-' && (c < '0' || c > '9') {
			return d.syntaxErr(c, "looking for beginning of value")
		}
		off := d.offset()
		start, end, _, exp, err := d.scanNumber()
		if err == nil && numbers {
			d.checkRange(start, end, exp, off)
		}
		return err
	}
}
