package keepalive

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"

	"golang.org/x/sys/unix"
)

// NonceLen is the length of the nonce a watcher's keepalive carries after
// its inner GRE header: a sequence number and a tag. The peer reflects the
// inner packet whole, so the reply carries the nonce back. Anyone who can
// send GRE to us can forge a reply, source and key included; only someone
// who saw the keepalive can echo its nonce, and that is the peer or the
// path to it.
const NonceLen = 16

// Nonces makes and checks the nonces of one process's keepalives. The tag is
// SipHash-2-4, under a key drawn from the kernel's random source when the
// process starts, of the tunnel's local and remote addresses, its input
// key (the reply's GRE key) and the sequence number. So a nonce is bound to
// its tunnel, costs a few dozen integer operations and no allocation to
// make or check, and needs no memory of what was sent beyond the sequence
// numbers the caller still accepts; and one made by an earlier process does
// not pass.
//
// Layout: the sequence number, 8 bytes big-endian; then the tag, 8 bytes.
type Nonces struct{ k0, k1 uint64 }

// NewNonces returns Nonces with a fresh random key.
func NewNonces() (*Nonces, error) {
	var key [16]byte
	// getrandom(2) rather than crypto/rand, whose package would be linked
	// into, and initialised by, every run of gre-hook for this alone.
	n, err := unix.Getrandom(key[:], 0)
	if err == nil && n != len(key) {
		err = fmt.Errorf("%d of %d bytes", n, len(key))
	}
	if err != nil {
		return nil, fmt.Errorf("drawing the keepalive nonce key: %w", err)
	}
	return NoncesWithKey(key), nil
}

// NoncesWithKey returns Nonces with the given key, for tests.
func NoncesWithKey(key [16]byte) *Nonces {
	return &Nonces{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}
}

// Put writes into dst the nonce of sequence number seq for the tunnel from
// local to remote whose replies carry ikey (0: none).
func (n *Nonces) Put(dst *[NonceLen]byte, local, remote netip.Addr, ikey uint32, seq uint64) {
	binary.BigEndian.PutUint64(dst[:8], seq)
	binary.BigEndian.PutUint64(dst[8:], n.tag(local, remote, ikey, seq))
}

// Check reports whether nonce is one that Put made for that tunnel, and
// returns its sequence number. Whether that number is recent is for the
// caller to say.
func (n *Nonces) Check(nonce *[NonceLen]byte, local, remote netip.Addr, ikey uint32) (seq uint64, ok bool) {
	seq = binary.BigEndian.Uint64(nonce[:8])
	// A forger's chance is 2^-64 a try whatever it sends, so the
	// comparison need not take constant time.
	return seq, binary.BigEndian.Uint64(nonce[8:]) == n.tag(local, remote, ikey, seq)
}

func (n *Nonces) tag(local, remote netip.Addr, ikey uint32, seq uint64) uint64 {
	var m [20]byte
	l, r := local.Unmap().As16(), remote.Unmap().As16()
	copy(m[0:4], l[12:])
	copy(m[4:8], r[12:])
	binary.BigEndian.PutUint32(m[8:], ikey)
	binary.BigEndian.PutUint64(m[12:], seq)
	return sipHash24(n.k0, n.k1, m[:])
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
// short-input PRF", 2012) of m under the key k0, k1, the key's two halves
// read little-endian.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(w uint64) {
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	n := len(m)
	for ; len(m) >= 8; m = m[8:] {
		compress(binary.LittleEndian.Uint64(m))
	}
	// The last word: what is left of m, and the length's low byte on top.
	last := uint64(n) << 56
	for i, b := range m {
		last |= uint64(b) << (8 * i)
	}
	compress(last)
	v2 ^= 0xff
	for i := 0; i < 4; i++ {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}
