package shard

import (
	"fmt"
	"math/bits"
)

// FNV-1a, 64 bit (hash/fnv's New64a), without its allocation.
const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// Hash is the 64-bit FNV-1a hash of the bytes of uid, as the API server
// computes it for shardRange(object.metadata.uid, …): the uid string exactly
// as in metadata.uid, not parsed or normalised.
func Hash(uid string) uint64 {
	h := uint64(offset64)
	for i := 0; i < len(uid); i++ {
		h ^= uint64(uid[i])
		h *= prime64
	}
	return h
}

// Range returns the i-th of n ranges [lo, hi) that split the hash space
// [0, 2^64) into parts whose sizes differ by at most one: lo is
// floor(i·2^64/n). The last range ends at 2^64, which a uint64 cannot hold: hi
// is then 0, and Contains and Selector read a hi of 0 as 2^64. For n a power
// of two the bounds are those of the API documentation's examples. Range
// panics unless 0 <= i < n.
func Range(i, n int) (lo, hi uint64) {
	if n < 1 || i < 0 || i >= n {
		panic(fmt.Sprintf("shard.Range(%d, %d): want 0 <= i < n", i, n))
	}
	return bound(i, n), bound(i+1, n)
}

// bound is floor(i·2^64/n) for 0 <= i < n, and 0 (standing for 2^64) for i == n.
func bound(i, n int) uint64 {
	if i == n {
		return 0
	}
	q, _ := bits.Div64(uint64(i), 0, uint64(n))
	return q
}

// Contains reports whether h is in [lo, hi), a hi of 0 standing for 2^64:
// whether the API server returns an object of hash h for Selector(lo, hi).
func Contains(h, lo, hi uint64) bool {
	return h >= lo && (hi == 0 || h < hi)
}

// Selector is the shard selector, for the shardSelector query parameter
// (metav1.ListOptions.ShardSelector), of the objects whose uid hashes into
// [lo, hi), a hi of 0 standing for 2^64. The API server echoes this exact
// text in a list's metadata.shardInfo.selector when it applied it. lo must be
// below hi, or the API server rejects the request.
func Selector(lo, hi uint64) string {
	end := fmt.Sprintf("0x%016x", hi)
	if hi == 0 {
		end = "0x10000000000000000"
	}
	return fmt.Sprintf("shardRange(object.metadata.uid, '0x%016x', '%s')", lo, end)
}

// Span is shard I of N: the uids whose Hash falls in Range(I, N).
type Span struct {
	I, N   int
	lo, hi uint64
}

// Of is shard i of n (0 <= i < n).
func Of(i, n int) *Span {
	lo, hi := Range(i, n)
	return &Span{I: i, N: n, lo: lo, hi: hi}
}

// Has reports whether the object with this uid belongs to the shard.
func (s *Span) Has(uid string) bool { return Contains(Hash(uid), s.lo, s.hi) }

// Selector is the shard's shardSelector.
func (s *Span) Selector() string { return Selector(s.lo, s.hi) }

// String names the shard as its Lease and checkpoint do: "shard-I-of-N".
func (s *Span) String() string { return fmt.Sprintf("shard-%d-of-%d", s.I, s.N) }
