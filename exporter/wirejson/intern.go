package wirejson

import "encoding/binary"

// Short keys and values repeat across objects ("metadata", "name", "v1",
// a namespace, a node). A decoder keeps the last one seen per hash slot
// and hands it out again instead of allocating an equal string: fewer
// allocations while decoding, and one copy in the informer cache instead
// of one per object. A slot holds one string, so unique strings (names,
// resource versions) only replace each other; the tables never grow.
const (
	maxInternKey   = 32
	maxInternValue = 24
	keySlots       = 512
	valueSlots     = 512
)

// hash mixes the length and the first and last eight bytes of b: cheap,
// and for keys and values this short enough to tell them apart. Strings
// that collide only take turns in a slot.
func hash(b []byte) uint32 {
	var x uint64
	switch n := len(b); {
	case n >= 8:
		x = binary.LittleEndian.Uint64(b) ^ binary.LittleEndian.Uint64(b[n-8:])*0x9e3779b97f4a7c15
	case n >= 4:
		x = uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<32
	default:
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
	}
	x ^= uint64(len(b))
	x *= 0xff51afd7ed558ccd
	return uint32(x >> 40)
}

type internTable struct {
	s [keySlots]string
}

// get returns b as a string.
func (t *internTable) get(b []byte) string {
	if len(b) > maxInternKey {
		return string(b)
	}
	h := hash(b) % keySlots
	if s := t.s[h]; s == string(b) {
		return s
	}
	s := string(b)
	t.s[h] = s
	return s
}

// valueTable also keeps the string in an interface, which costs an
// allocation of its own.
type valueTable struct {
	e [valueSlots]struct {
		s string
		v any
	}
}

// get returns b as a string in an interface.
func (t *valueTable) get(b []byte) any {
	if len(b) > maxInternValue {
		return string(b)
	}
	h := hash(b) % valueSlots
	e := &t.e[h]
	if e.v != nil && e.s == string(b) {
		return e.v
	}
	e.s = string(b)
	e.v = e.s
	return e.v
}
