// Package netdelay is a TCP proxy that adds a fixed delay in each
// direction, for benchmarks that need a network between kubefeed and a
// sink. It is pipelined: every chunk read is written delay after it was
// read, while later chunks keep flowing, so the link has latency but no
// bandwidth limit and no serialisation of round trips (as a real network
// hop). Order within a connection is kept.
package netdelay
