// Package freeport picks loopback ports for the servers tests start as
// processes or in process (nats-server, etcd, kube-apiserver, the
// Collector, a Kafka broker).
//
// A port is only free when asked: between the ask and the server's bind,
// another socket may take it. The kernel's own choice (":0") comes from
// the ephemeral range, which every outgoing connection of the test run
// draws its local port from as well, so Port picks below that range
// instead, where only listeners that asked for a port by number compete.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// low and high bound the ports Port tries first: below Linux's default
// ephemeral range (32768–60999) and above most well-known services.
const low, high = 20000, 32000

var (
	mu    sync.Mutex
	given = map[int]bool{} // ports this process handed out
)

// Port returns a loopback TCP port nothing listened on when asked, and
// that this process has not handed out before.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	lo, hi := low, min(high, ephemeralLow())
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if given[p] || !bindable(p) {
			continue
		}
		given[p] = true
		return p, nil
	}
	// The range is crowded: the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free loopback port: %w", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	given[p] = true
	return p, nil
}

func bindable(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// ephemeralLow is the low end of the kernel's ephemeral port range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= low+1000 {
		return 32768
	}
	return n
}
