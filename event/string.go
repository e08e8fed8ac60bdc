package event

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// appendFloat formats like encoding/json: ES6 number to string.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does without HTML escaping:
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	raw := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	for i := 0; i < len(s); {
		// Sixteen, then eight bytes at a time while none needs care: most
		// strings of a Kubernetes object are plain ASCII.
		for i+16 <= len(raw) && (needsCare(binary.LittleEndian.Uint64(raw[i:]))|needsCare(binary.LittleEndian.Uint64(raw[i+8:]))) == 0 {
			i += 16
		}
		for i+8 <= len(raw) && needsCare(binary.LittleEndian.Uint64(raw[i:])) == 0 {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Masks of needsCare: a byte in each lane.
const (
	lanes01 = 0x0101010101010101
	lanes80 = 0x8080808080808080
)

// needsCare returns, for the eight bytes of x (little-endian), a nonzero
// word when one of them is not ASCII that JSON writes as is: at or above
// 0x80, below 0x20, '"' or '\\'. Where no byte is at or above 0x80,
// subtracting n from each lane sets a lane's high bit exactly when some
// lane up to it is below n (a borrow only starts at such a lane), so the
// word tests are exact.
func needsCare(x uint64) uint64 {
	q := x ^ ('"' * lanes01)
	bs := x ^ ('\\' * lanes01)
	return (x | (x - 0x20*lanes01) | (q - lanes01) | (bs - lanes01)) & lanes80
}
