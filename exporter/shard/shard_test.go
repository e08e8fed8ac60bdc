package shard

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

func TestHashIsFNV1a64(t *testing.T) {
	// Published FNV-1a 64 test vectors.
	for in, want := range map[string]uint64{
		"":       0xcbf29ce484222325,
		"a":      0xaf63dc4c8601ec8c,
		"foobar": 0x85944171f73967e8,
	} {
		if got := Hash(in); got != want {
			t.Errorf("Hash(%q) = %#x, want %#x", in, got, want)
		}
	}
	for i := 0; i < 100; i++ {
		uid := string(uuid.NewUUID())
		h := fnv.New64a()
		h.Write([]byte(uid))
		if got, want := Hash(uid), h.Sum64(); got != want {
			t.Fatalf("Hash(%q) = %#x, hash/fnv says %#x", uid, got, want)
		}
		// The API server's own hash (k8s.io/apimachinery/pkg/sharding).
		if got, want := fmt.Sprintf("%016x", Hash(uid)), sharding.HashField(uid); got != want {
			t.Fatalf("Hash(%q) = %s, sharding.HashField says %s", uid, got, want)
		}
	}
}

func TestRangeSplitsTheHashSpace(t *testing.T) {
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	asBig := func(v uint64, isEnd bool) *big.Int {
		if isEnd && v == 0 {
			return new(big.Int).Set(two64)
		}
		return new(big.Int).SetUint64(v)
	}
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 10, 64, 1000, math.MaxInt32} {
		minSize, maxSize := new(big.Int), new(big.Int)
		for _, i := range sample(n) {
			lo, hi := Range(i, n)
			l, h := asBig(lo, false), asBig(hi, true)
			// lo = floor(i * 2^64 / n)
			want := new(big.Int).Div(new(big.Int).Mul(big.NewInt(int64(i)), two64), big.NewInt(int64(n)))
			if l.Cmp(want) != 0 {
				t.Fatalf("Range(%d, %d) lo = %#x, want %#x", i, n, lo, want)
			}
			if h.Cmp(l) <= 0 {
				t.Fatalf("Range(%d, %d) = [%#x, %#x): empty", i, n, lo, hi)
			}
			if i == 0 && lo != 0 {
				t.Fatalf("Range(0, %d) starts at %#x", n, lo)
			}
			if i == n-1 && hi != 0 {
				t.Fatalf("Range(%d, %d) ends at %#x, want 2^64 (0)", i, n, hi)
			}
			if i > 0 {
				if _, prevHi := Range(i-1, n); prevHi != lo {
					t.Fatalf("Range(%d, %d) starts at %#x, the previous range ends at %#x", i, n, lo, prevHi)
				}
			}
			size := new(big.Int).Sub(h, l)
			if minSize.Sign() == 0 || size.Cmp(minSize) < 0 {
				minSize.Set(size)
			}
			if size.Cmp(maxSize) > 0 {
				maxSize.Set(size)
			}
		}
		if d := new(big.Int).Sub(maxSize, minSize); d.Cmp(big.NewInt(1)) > 0 {
			t.Errorf("n=%d: range sizes differ by %v", n, d)
		}
	}
}

// sample is every i < n for small n, and the first, middle and last few
// otherwise.
func sample(n int) []int {
	if n <= 10 {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	return []int{0, 1, 2, n / 2, n/2 + 1, n - 2, n - 1}
}

func TestRangePanicsOnBadInput(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {-1, 2}, {2, 2}, {3, 2}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Range(%d, %d) did not panic", c[0], c[1])
				}
			}()
			Range(c[0], c[1])
		}()
	}
}

func TestSelectorText(t *testing.T) {
	// The examples of metav1.ListOptions.ShardSelector's documentation.
	want := map[[2]int]string{
		{0, 1}: "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')",
		{0, 2}: "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')",
		{1, 2}: "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')",
		{0, 4}: "shardRange(object.metadata.uid, '0x0000000000000000', '0x4000000000000000')",
		{1, 4}: "shardRange(object.metadata.uid, '0x4000000000000000', '0x8000000000000000')",
		{2, 4}: "shardRange(object.metadata.uid, '0x8000000000000000', '0xc000000000000000')",
		{3, 4}: "shardRange(object.metadata.uid, '0xc000000000000000', '0x10000000000000000')",
		{1, 3}: "shardRange(object.metadata.uid, '0x5555555555555555', '0xaaaaaaaaaaaaaaaa')",
	}
	for in, w := range want {
		if got := Selector(Range(in[0], in[1])); got != w {
			t.Errorf("Selector(Range(%d, %d)) = %q, want %q", in[0], in[1], got, w)
		}
	}
}

// The grammar k8s.io/apiserver/pkg/sharding.Parse accepts for one range: a
// bound is '0x' and exactly 16 lowercase hex digits, or '0x10000000000000000'.
var selectorRE = regexp.MustCompile(`^shardRange\(object\.metadata\.uid, '(0x[0-9a-f]{16}|0x10000000000000000)', '(0x[0-9a-f]{16}|0x10000000000000000)'\)$`)

// TestAgreesWithTheAPIServer checks Selector, Contains and Hash against the
// API server's selector (k8s.io/apimachinery/pkg/sharding): the echo in
// shardInfo is the text Selector wrote, and the server matches an object
// exactly when Contains(Hash(uid), lo, hi).
func TestAgreesWithTheAPIServer(t *testing.T) {
	var ranges [][2]uint64
	for _, n := range []int{1, 2, 3, 4, 7, 16} {
		for i := 0; i < n; i++ {
			lo, hi := Range(i, n)
			ranges = append(ranges, [2]uint64{lo, hi})
		}
	}
	ranges = append(ranges, [2]uint64{0, 1}, [2]uint64{math.MaxUint64 - 1, math.MaxUint64}, [2]uint64{math.MaxUint64, 0}, [2]uint64{0x10, 0x1000})
	var uids []string
	for i := 0; i < 200; i++ {
		uids = append(uids, string(uuid.NewUUID()))
	}
	for _, r := range ranges {
		lo, hi := r[0], r[1]
		text := Selector(lo, hi)
		m := selectorRE.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("Selector(%#x, %#x) = %q: not what the API server parses", lo, hi, text)
		}
		if !sharding.HexLess(m[1], m[2]) {
			t.Fatalf("Selector(%#x, %#x) = %q: the API server wants start < end", lo, hi, text)
		}
		sel := sharding.NewSelector(sharding.ShardRangeRequirement{Key: "object.metadata.uid", Start: m[1], End: m[2]})
		if got := sel.String(); got != text {
			t.Fatalf("the API server would echo %q for %q", got, text)
		}
		for _, uid := range uids {
			obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}}
			server, err := sel.Matches(obj)
			if err != nil {
				t.Fatal(err)
			}
			if ours := Contains(Hash(uid), lo, hi); ours != server {
				t.Fatalf("uid %s (hash %#x) in %q: Contains says %v, the API server %v", uid, Hash(uid), text, ours, server)
			}
		}
		// The bounds themselves, through the server's comparison.
		for _, h := range []uint64{lo, lo - 1, lo + 1, hi, hi - 1, hi + 1, 0, math.MaxUint64} {
			hex := fmt.Sprintf("0x%016x", h)
			server := !sharding.HexLess(hex, m[1]) && sharding.HexLess(hex, m[2])
			if ours := Contains(h, lo, hi); ours != server {
				t.Fatalf("hash %#x in %q: Contains says %v, the API server's comparison %v", h, text, ours, server)
			}
		}
	}
	if !strings.Contains(Selector(Range(0, 1)), "'0x10000000000000000'") {
		t.Error("the whole hash space does not end at 2^64")
	}
}

func BenchmarkHash(b *testing.B) {
	uid := string(uuid.NewUUID())
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(uid)
	}
}
