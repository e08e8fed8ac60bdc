package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports handed out are bindable, below the ephemeral range, and never
// handed out twice by one process.
func TestPortsAreBindableDistinctAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < low || p >= ephemeralLow() {
			t.Fatalf("port %d outside %d–%d (the free range is not crowded here)", p, low, ephemeralLow())
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}

// A port something listens on is not handed out.
func TestPortInUseIsNotHandedOut(t *testing.T) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	busy := map[int]bool{}
	for p := low; p < low+2000; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			held = append(held, l)
			busy[p] = true
		}
	}
	for range 100 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if busy[p] {
			t.Fatalf("port %d is listened on, handed out", p)
		}
	}
}
