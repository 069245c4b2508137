package keepalive

import (
	"net/netip"
	"testing"
)

// TestSipHashVectors checks sipHash24 against the paper's worked example
// (key 00..0f, message 00..0e, appendix A: a129ca6149be45e5) and the
// reference implementation's first vector (the empty message).
func TestSipHashVectors(t *testing.T) {
	var key [16]byte
	msg := make([]byte, 15)
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	n := NoncesWithKey(key)
	for _, tc := range []struct {
		m    []byte
		want uint64
	}{{msg, 0xa129ca6149be45e5}, {nil, 0x726fdb47dd0e0e31}} {
		if got := sipHash24(n.k0, n.k1, tc.m); got != tc.want {
			t.Errorf("SipHash-2-4 of %d bytes: %016x, want %016x", len(tc.m), got, tc.want)
		}
	}
}

func TestNonces(t *testing.T) {
	n, err := NewNonces()
	if err != nil {
		t.Fatal(err)
	}
	var nonce [NonceLen]byte
	n.Put(&nonce, site1, site2, 100, 42)
	if seq, ok := n.Check(&nonce, site1, site2, 100); !ok || seq != 42 {
		t.Fatalf("Check of a nonce just made: %d, %v", seq, ok)
	}
	if _, ok := n.Check(&nonce, netip.AddrFrom16(site1.As16()), site2, 100); !ok {
		t.Error("an IPv4-mapped local address checks differently")
	}
	// Bound to the tunnel, the sequence number and the key.
	other := netip.MustParseAddr("203.0.113.2")
	for _, tc := range []struct {
		what          string
		local, remote netip.Addr
		ikey          uint32
	}{{"another local", other, site2, 100}, {"another remote", site1, other, 100}, {"another key", site1, site2, 101}, {"no key", site1, site2, 0}} {
		if _, ok := n.Check(&nonce, tc.local, tc.remote, tc.ikey); ok {
			t.Errorf("%s: the nonce passes", tc.what)
		}
	}
	forged := nonce
	forged[7]++ // sequence 43 with 42's tag
	if _, ok := n.Check(&forged, site1, site2, 100); ok {
		t.Error("a nonce with its sequence number changed passes")
	}
	for i := 0; i < NonceLen; i++ {
		flipped := nonce
		flipped[i] ^= 1
		if _, ok := n.Check(&flipped, site1, site2, 100); ok {
			t.Errorf("a nonce with byte %d changed passes", i)
		}
	}
	m, err := NewNonces()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Check(&nonce, site1, site2, 100); ok {
		t.Error("another process's key passes the nonce")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		n.Put(&nonce, site1, site2, 100, 43)
		n.Check(&nonce, site1, site2, 100)
	}); allocs != 0 {
		t.Errorf("Put and Check allocate %v times", allocs)
	}
}

func BenchmarkNonceCheck(b *testing.B) {
	n := NoncesWithKey([16]byte{1})
	var nonce [NonceLen]byte
	n.Put(&nonce, site1, site2, 100, 1)
	for i := 0; i < b.N; i++ {
		n.Check(&nonce, site1, site2, 100)
	}
}
