package wirejson

import (
	"strings"
	"testing"
	"unsafe"
)

// Keys and short values seen before are not allocated again.
func TestInterning(t *testing.T) {
	d := NewDecoder(strings.NewReader(stream[1]+stream[1]), Options{})
	var a, b Event
	if d.Decode(&a) != nil || d.Decode(&b) != nil {
		t.Fatal("decode failed")
	}
	key := func(m map[string]any, k string) *byte {
		for mk := range m {
			if mk == k {
				return unsafe.StringData(mk)
			}
		}
		return nil
	}
	if key(a.Object, "metadata") != key(b.Object, "metadata") {
		t.Error("the key metadata was allocated twice")
	}
	if unsafe.StringData(a.Object["kind"].(string)) != unsafe.StringData(b.Object["kind"].(string)) {
		t.Error("the value Event was allocated twice")
	}
	a.Object["kind"] = "changed" // the maps are the caller's
	if b.Object["kind"] != "Event" {
		t.Error("decoded objects share a map")
	}
}

// Strings that collide in an intern slot come out as themselves, in the
// same event and across events.
func TestInternSlotCollisions(t *testing.T) {
	// Find strings of the same length that share a slot.
	bySlot := map[uint32][]string{}
	var same []string
	for i := 0; len(same) < 5 && i < 1<<20; i++ {
		s := "k" + strings.Repeat("0", 8) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26)) + strings.Repeat("0", 8)
		h := hash([]byte(s))
		bySlot[h] = append(bySlot[h], s)
		if len(bySlot[h]) == 5 {
			same = bySlot[h]
		}
	}
	if len(same) < 5 {
		t.Fatal("no five strings share a slot")
	}
	var evs []string
	for r := range 3 {
		var b strings.Builder
		b.WriteString(`{"type":"ADDED","object":{`)
		for i, s := range same {
			if i > 0 {
				b.WriteByte(',')
			}
			// keys and values from the same colliding set, rotated
			b.WriteString(`"` + s + `":"` + same[(i+r)%len(same)] + `"`)
		}
		b.WriteString(`}}`)
		evs = append(evs, b.String())
	}
	checkStreamMatchesKJSON(t, []byte(strings.Join(evs, "\x00")), nil, false)
	checkStreamMatchesKJSON(t, []byte(strings.Join(evs, "\x00")), []byte{3, 1}, false)
}
