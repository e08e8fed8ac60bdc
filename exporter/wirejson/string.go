package wirejson

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// strSafe marks the bytes a string's contents can hold as they are:
// printable ASCII other than '"' and '\\'.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// ensure reads until buf[i] exists and returns how far the buffer's
// contents moved; a caller holding positions subtracts it from them.
func (d *Decoder) ensure(i int) (int, error) {
	total := 0
	for i-total >= d.end {
		s, err := d.fill()
		total += s
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// scanString consumes the string whose opening quote is at the read
// position and returns the span of its contents in d.buf; plain is false
// when they need unquoting (escapes, or bytes that may not be UTF-8).
func (d *Decoder) scanString() (start, end int, plain bool, err error) {
	d.pos++
	start = d.pos
	i := start
	esc, high := false, false
	for {
		buf := d.buf[:d.end]
		for i < len(buf) && strSafe[buf[i]] {
			i++
		}
		if i >= len(buf) {
			s, err := d.ensure(i)
			start -= s
			i -= s
			if err != nil {
				d.pos = i
				return 0, 0, false, err
			}
			continue
		}
		switch c := buf[i]; {
		case c == '"':
			d.pos = i + 1
			if high && !esc && utf8.Valid(buf[start:i]) {
				high = false
			}
			return start, i, !esc && !high, nil
		case c == '\\':
			esc = true
			s, err := d.ensure(i + 1)
			start -= s
			i -= s
			if err != nil {
				d.pos = i
				return 0, 0, false, err
			}
			switch d.buf[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				i += 2
				for range 4 {
					s, err := d.ensure(i)
					start -= s
					i -= s
					if err != nil {
						d.pos = i
						return 0, 0, false, err
					}
					if !isHex(d.buf[i]) {
						d.pos = i
						return 0, 0, false, d.syntaxErr(d.buf[i], "in \\u hexadecimal character escape")
					}
					i++
				}
			default:
				d.pos = i + 1
				return 0, 0, false, d.syntaxErr(d.buf[i+1], "in string escape code")
			}
		case c < ' ':
			d.pos = i
			return 0, 0, false, d.syntaxErr(c, "in string literal")
		default: // c >= 0x80
			high = true
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// contents returns the unquoted contents of the string just scanned:
// buf[start:end] itself when plain, else d.scratch.
func (d *Decoder) contents(start, end int, plain bool) []byte {
	raw := d.buf[start:end]
	if plain {
		return raw
	}
	d.scratch = unquote(d.scratch[:0], raw)
	return d.scratch
}

// key decodes an object key (its opening quote at the read position).
func (d *Decoder) key() (string, error) {
	start, end, plain, err := d.scanString()
	if err != nil {
		return "", err
	}
	return d.keys.get(d.contents(start, end, plain)), nil
}

// strValue decodes a string into an interface, shared with earlier equal
// short strings.
func (d *Decoder) strValue() (any, error) {
	start, end, plain, err := d.scanString()
	if err != nil {
		return nil, err
	}
	return d.strs.get(d.contents(start, end, plain)), nil
}

// unquote appends the unescaped contents of a valid JSON string (quotes
// removed) to t as encoding/json does: invalid UTF-8 bytes and unpaired
// surrogates become U+FFFD.
func unquote(t, s []byte) []byte {
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			r++
			switch s[r] {
			case 'b':
				t = append(t, '\b')
			case 'f':
				t = append(t, '\f')
			case 'n':
				t = append(t, '\n')
			case 'r':
				t = append(t, '\r')
			case 't':
				t = append(t, '\t')
			case 'u':
				rr := getu4(s[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						t = utf8.AppendRune(t, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				t = utf8.AppendRune(t, rr)
				continue
			default: // '"', '\\', '/'
				t = append(t, s[r])
			}
			r++
		case c < utf8.RuneSelf:
			t = append(t, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			t = utf8.AppendRune(t, rr)
		}
	}
	return t
}

// getu4 decodes \uXXXX from the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
