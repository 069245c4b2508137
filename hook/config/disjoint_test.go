package config

import (
	"math/rand"
	"net/netip"
	"testing"
)

// disjoint agrees with the pairwise comparison that crossCheck makes when
// it finds an overlap, on sets of prefixes that nest, repeat, share an
// address, and mix the two families.
func TestDisjointAgreesWithPairs(t *testing.T) {
	pairwise := func(ps []netip.Prefix) bool {
		for i := range ps {
			for j := 0; j < i; j++ {
				if ps[i].Addr() == ps[j].Addr() || ps[i].Masked().Overlaps(ps[j].Masked()) {
					return false
				}
			}
		}
		return true
	}
	rnd := rand.New(rand.NewSource(1))
	random := func() netip.Prefix {
		if rnd.Intn(3) == 0 {
			var a [16]byte
			a[0], a[1], a[15] = 0x20, 0x01, byte(rnd.Intn(4))
			a[7] = byte(rnd.Intn(4))
			return netip.PrefixFrom(netip.AddrFrom16(a), []int{0, 48, 63, 64, 65, 126, 127, 128}[rnd.Intn(8)])
		}
		a := [4]byte{10, 0, byte(rnd.Intn(3)), byte(rnd.Intn(16))}
		return netip.PrefixFrom(netip.AddrFrom4(a), []int{0, 8, 22, 24, 28, 30, 31, 32}[rnd.Intn(8)])
	}
	seen := map[bool]int{}
	for round := 0; round < 20000; round++ {
		ps := make([]netip.Prefix, 1+rnd.Intn(5))
		for i := range ps {
			ps[i] = random()
		}
		want := pairwise(ps)
		seen[want]++
		if got := disjoint(ps); got != want {
			t.Fatalf("disjoint(%v) = %v, pairwise %v", ps, got, want)
		}
	}
	if seen[true] < 1000 || seen[false] < 1000 {
		t.Fatalf("the sets were too alike to prove anything: %v", seen)
	}
	// The seed's tunnels at scale: a thousand /30s and /64s, disjoint,
	// then the same with one repeated.
	var ps []netip.Prefix
	for i := 0; i < 1000; i++ {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 64), byte(i % 64 * 4), 1}), 30),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, byte(i >> 8), byte(i), 15: 1}), 64))
	}
	if !disjoint(ps) {
		t.Error("a thousand disjoint /30s and /64s: not disjoint")
	}
	if disjoint(append(ps, netip.MustParsePrefix("10.3.4.2/30"))) {
		t.Error("10.3.4.2/30 beside 10.3.4.1/30: disjoint")
	}
}
