package wirejson

import "encoding/binary"

// Short keys and values repeat across objects ("metadata", "name", "v1",
// a namespace, a node). A decoder keeps the last two seen per hash slot
// and hands them out again instead of allocating an equal string: fewer
// allocations while decoding, and one copy in the informer cache instead
// of one per object. A new string takes the slot's first place and moves
// the one there to the second, so two hot strings that share a slot both
// stay, and unique strings (names, resource versions) only replace each
// other; the tables never grow.
const (
	maxInternKey   = 32
	maxInternValue = 24
	slots          = 512
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
	return uint32(x>>40) % slots
}

type internTable struct {
	s [slots][2]string
}

// get returns b as a string.
func (t *internTable) get(b []byte) string {
	if len(b) > maxInternKey {
		return string(b)
	}
	e := &t.s[hash(b)]
	if e[0] == string(b) {
		return e[0]
	}
	if e[1] == string(b) {
		return e[1]
	}
	s := string(b)
	e[1], e[0] = e[0], s
	return s
}

// valueTable keeps the string in an interface too, which costs an
// allocation of its own.
type valueTable struct {
	e [slots][2]internedValue
}

type internedValue struct {
	s string
	v any // s, or nil for an empty place
}

// get returns b as a string in an interface.
func (t *valueTable) get(b []byte) any {
	if len(b) > maxInternValue {
		return string(b)
	}
	e := &t.e[hash(b)]
	if e[0].v != nil && e[0].s == string(b) {
		return e[0].v
	}
	if e[1].v != nil && e[1].s == string(b) {
		return e[1].v
	}
	s := string(b)
	e[1], e[0] = e[0], internedValue{s, s}
	return e[0].v
}
