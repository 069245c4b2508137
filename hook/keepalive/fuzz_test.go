package keepalive

import (
	"testing"
)

// fuzzNonces has a key the seeds' nonces were not made with.
var fuzzNonces = NoncesWithKey([16]byte{0x9e, 0x37, 0x79, 0xb9})

// FuzzParse feeds arbitrary bytes to the parser, as a raw socket, a capture
// or a hostile peer might. No input may panic, and what it accepts must be
// consistent with the bytes.
func FuzzParse(f *testing.F) {
	for _, key := range []uint32{0, 200} {
		for _, nonce := range [][]byte{nil, make([]byte, NonceLen)} {
			ka := PacketNonce(site1, site2, key, key, nonce)
			f.Add(append(ipv4For(site1, site2, len(ka)), ka...))
			f.Add(ka[len(appendGREHeader(nil, ProtoIPv4, key)):])
		}
	}
	f.Add(gre(0xb0, 0, 0x08, 0, 0xaa, 0xbb, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1))
	f.Add(gre(0x30, 0x81, 0x88, 0x0b))
	f.Add([]byte{0x4f, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			if h.Src.IsValid() || h.Payload != nil {
				t.Fatalf("refused with %v but returned %+v", err, h)
			}
			return
		}
		if !h.Src.Is4() || !h.Dst.Is4() {
			t.Fatalf("accepted with addresses %s -> %s", h.Src, h.Dst)
		}
		if len(h.Payload) > len(b)-20-4 {
			t.Fatalf("payload of %d bytes from a %d-byte packet", len(h.Payload), len(b))
		}
		if h.Reply() != (h.Proto == 0) {
			t.Fatal("Reply disagrees with Proto")
		}
		// A reply's nonce, whatever its bytes, is checked without a panic
		// and, short of a 2^-64 chance, refused.
		if h.Reply() && len(h.Payload) == NonceLen {
			var n [NonceLen]byte
			copy(n[:], h.Payload)
			if _, ok := fuzzNonces.Check(&n, h.Dst, h.Src, h.Key); ok {
				t.Fatalf("a nonce made under another key passes: % x", n)
			}
		}
	})
}
