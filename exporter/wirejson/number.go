package wirejson

import (
	"strconv"
)

// Number scanner states, after the byte named.
const (
	nMinus = iota // '-': a digit must follow
	nZero         // a leading 0: no more integer digits
	nInt          // integer digits
	nDot          // '.': a digit must follow
	nFrac         // fraction digits
	nE            // 'e' or 'E': a sign or digit must follow
	nESign        // the exponent's sign: a digit must follow
	nExp          // exponent digits
)

// scanNumber consumes the number at the read position and returns its
// span in d.buf; integer is false when it has a fraction or an exponent,
// exp when it has an exponent.
func (d *Decoder) scanNumber() (start, end int, integer, exp bool, err error) {
	start = d.pos
	i := start
	state := nMinus
	if d.buf[i] != '-' {
		state = nInt
		if d.buf[i] == '0' {
			state = nZero
		}
	}
	i++
	for {
		if i >= d.end {
			s, err := d.ensure(i)
			start -= s
			i -= s
			if err != nil {
				d.pos = i
				return 0, 0, false, false, err
			}
		}
		c := d.buf[i]
		digit := c >= '0' && c <= '9'
		switch state {
		case nMinus:
			switch {
			case c == '0':
				state = nZero
			case digit:
				state = nInt
			default:
				d.pos = i
				return 0, 0, false, false, d.syntaxErr(c, "in numeric literal")
			}
		case nInt, nZero:
			switch {
			case digit && state == nInt:
			case c == '.':
				state = nDot
			case c == 'e' || c == 'E':
				state = nE
			default:
				d.pos = i
				return start, i, true, false, nil
			}
		case nDot:
			if !digit {
				d.pos = i
				return 0, 0, false, false, d.syntaxErr(c, "after decimal point in numeric literal")
			}
			state = nFrac
		case nFrac:
			switch {
			case digit:
			case c == 'e' || c == 'E':
				state = nE
			default:
				d.pos = i
				return start, i, false, false, nil
			}
		case nE:
			switch {
			case c == '+' || c == '-':
				state = nESign
			case digit:
				state = nExp
			default:
				d.pos = i
				return 0, 0, false, false, d.syntaxErr(c, "in exponent of numeric literal")
			}
		case nESign:
			if !digit {
				d.pos = i
				return 0, 0, false, false, d.syntaxErr(c, "in exponent of numeric literal")
			}
			state = nExp
		case nExp:
			if !digit {
				d.pos = i
				return start, i, false, true, nil
			}
		}
		i++
	}
}

// number decodes the number at the read position as kjson's PreserveInts
// does: an integer literal that fits is an int64, any other number a
// float64; one beyond float64's range is a ValueError (and nil).
func (d *Decoder) number() (any, error) {
	off := d.offset()
	start, end, integer, _, err := d.scanNumber()
	if err != nil {
		return nil, err
	}
	lit := d.buf[start:end]
	if integer {
		if i, ok := parseInt(lit); ok {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		d.saveValueErr("number "+string(lit)+" is out of range", off)
		return nil, nil
	}
	return f, nil
}

// parseInt parses a valid JSON integer literal into an int64 unless it
// overflows.
func parseInt(lit []byte) (int64, bool) {
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range lit {
		u = u*10 + uint64(c-'0') // 19 digits fit in a uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true // -(1<<63) wraps to itself
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// checkRange reports a skipped number that encoding/json could not decode.
// Only an exponent or more than 308 digits reach beyond float64.
func (d *Decoder) checkRange(start, end int, exp bool, off int64) {
	if !exp && end-start <= 300 {
		return
	}
	if _, err := strconv.ParseFloat(string(d.buf[start:end]), 64); err != nil {
		d.saveValueErr("number "+string(d.buf[start:end])+" is out of range", off)
	}
}
