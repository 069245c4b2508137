package keepalive

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

var (
	site1 = netip.MustParseAddr("198.51.100.1")
	site2 = netip.MustParseAddr("203.0.113.1")
)

// unhex reads hex bytes written in groups, for golden packets.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPacketGolden(t *testing.T) {
	nonce := unhex(t, "0001 0203 0405 0607 0809 0a0b 0c0d 0e0f")
	for _, tc := range []struct {
		name       string
		okey, ikey uint32
		nonce      []byte
		want       string
	}{{
		name: "no key",
		want: `
			0000 0800                 outer GRE: no flags, IPv4
			4500 0018 0000 4000       inner IPv4: 24 bytes, ID 0, DF
			ff2f 1580                 TTL 255, GRE, checksum
			cb00 7101 c633 6401       203.0.113.1 -> 198.51.100.1
			0000 0000                 inner GRE: no flags, protocol 0`,
	}, {
		name: "one key both ways", okey: 200, ikey: 200,
		want: `
			2000 0800 0000 00c8       outer GRE: K, IPv4, key 200
			4500 001c 0000 4000
			ff2f 157c
			cb00 7101 c633 6401
			2000 0000 0000 00c8       inner GRE: K, protocol 0, key 200`,
	}, {
		name: "separate keys", okey: 200, ikey: 100,
		want: `
			2000 0800 0000 00c8       outer GRE: the peer's input key
			4500 001c 0000 4000
			ff2f 157c
			cb00 7101 c633 6401
			2000 0000 0000 0064       inner GRE: our input key`,
	}, {
		name: "a nonce", nonce: nonce,
		want: `
			0000 0800
			4500 0028 0000 4000       inner IPv4: 40 bytes
			ff2f 1570
			cb00 7101 c633 6401
			0000 0000                 inner GRE: no flags, protocol 0
			0001 0203 0405 0607       the nonce: sequence number
			0809 0a0b 0c0d 0e0f       and tag`,
	}, {
		name: "a nonce and separate keys", okey: 200, ikey: 100, nonce: nonce,
		want: `
			2000 0800 0000 00c8
			4500 002c 0000 4000       inner IPv4: 44 bytes
			ff2f 156c
			cb00 7101 c633 6401
			2000 0000 0000 0064
			0001 0203 0405 0607
			0809 0a0b 0c0d 0e0f`,
	}, {
		name: "output key only", okey: 7,
		want: `
			2000 0800 0000 0007
			4500 0018 0000 4000
			ff2f 1580
			cb00 7101 c633 6401
			0000 0000`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var want []byte
			for _, line := range strings.Split(tc.want, "\n") {
				// Keep the hex groups, drop the comment after them.
				var groups []string
				for _, f := range strings.Fields(line) {
					if len(f) != 4 {
						break
					}
					if _, err := hex.DecodeString(f); err != nil {
						break
					}
					groups = append(groups, f)
				}
				want = append(want, unhex(t, strings.Join(groups, ""))...)
			}
			got := PacketNonce(site1, site2, tc.okey, tc.ikey, tc.nonce)
			if !bytes.Equal(got, want) {
				t.Fatalf("PacketNonce(%s, %s, %d, %d, % x)\n got % x\nwant % x", site1, site2, tc.okey, tc.ikey, tc.nonce, got, want)
			}
			if len(got) > maxPacketLen {
				t.Fatalf("%d bytes, more than maxPacketLen (%d)", len(got), maxPacketLen)
			}
			if tc.nonce != nil {
				return
			}
			if p := PacketKeys(site1, site2, tc.okey, tc.ikey); !bytes.Equal(p, got) {
				t.Fatalf("PacketKeys differs from PacketNonce with no nonce:\n% x\n% x", p, got)
			}
			if tc.okey == tc.ikey {
				if p := Packet(site1, site2, tc.okey); !bytes.Equal(p, got) {
					t.Fatalf("Packet differs from PacketKeys with the same key:\n% x\n% x", p, got)
				}
			}
		})
	}
}

// TestChecksumByHand checks the inner header's checksum against one worked
// out on paper (RFC 1071), for the unkeyed keepalive of 198.51.100.1 to
// 203.0.113.1:
//
//	4500 + 0018 + 0000 + 4000 + ff2f + 0000 (checksum)
//	     + cb00 + 7101 + c633 + 6401        = 0x3ea7c
//	fold: ea7c + 3 = ea7f; complement: 1580
//
// and that summing the header with its checksum gives ffff, as a receiver
// checks it.
func TestChecksumByHand(t *testing.T) {
	hdr := unhex(t, "4500 0018 0000 4000 ff2f 0000 cb00 7101 c633 6401")
	if got := ipv4Checksum(hdr); got != 0x1580 {
		t.Fatalf("checksum %04x, worked out by hand as 1580", got)
	}
	inner := Packet(site1, site2, 0)[4:24]
	if got := ipv4Checksum(inner); got != 0 {
		t.Fatalf("the inner header with its checksum sums to %04x, want ffff (complement 0)", ^got)
	}
	// A sum that needs folding twice: ffff+ffff+ffff+0002 = 2ffff,
	// ffff + 2 = 10001, 0001 + 1 = 0002; complement fffd.
	if got := ipv4Checksum([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x02}); got != 0xfffd {
		t.Fatalf("checksum of ffff ffff ffff 0002 is %04x, want fffd", got)
	}
}

func TestPacketRefusesLongNonce(t *testing.T) {
	if p := PacketNonce(site1, site2, 0, 0, make([]byte, NonceLen+1)); p != nil {
		t.Errorf("a nonce of %d bytes: % x, want nil", NonceLen+1, p)
	}
}

func TestPacketRefusesNonIPv4(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range [][2]netip.Addr{{v6, site2}, {site1, v6}, {{}, site2}, {site1, {}}} {
		if p := Packet(tc[0], tc[1], 0); p != nil {
			t.Errorf("Packet(%s, %s) = % x, want nil", tc[0], tc[1], p)
		}
	}
	// IPv4-mapped IPv6 is IPv4.
	mapped := netip.AddrFrom16(site1.As16())
	if !bytes.Equal(Packet(mapped, site2, 0), Packet(site1, site2, 0)) {
		t.Error("an IPv4-mapped local address gives another packet")
	}
}

// TestPacketRoundTrip parses a keepalive as the peer's kernel sees it
// (with an outer IPv4 header in front) and its inner packet as the reply
// we get back.
func TestPacketRoundTrip(t *testing.T) {
	nonce := make([]byte, NonceLen)
	for _, key := range []uint32{0, 1, 0xffffffff} {
		ka := Packet(site1, site2, key)
		withNonce := PacketNonce(site1, site2, key, key, nonce)
		outer := append(ipv4For(site1, site2, len(ka)), ka...)
		h, err := Parse(outer)
		if err != nil {
			t.Fatalf("key %d: parsing the keepalive: %v", key, err)
		}
		if h.Src != site1 || h.Dst != site2 || h.Proto != ProtoIPv4 || h.Reply() || h.HasKey != (key != 0) || h.Key != key {
			t.Fatalf("key %d: keepalive parsed as %+v", key, h)
		}
		r, err := Parse(h.Payload)
		if err != nil {
			t.Fatalf("key %d: parsing the inner packet: %v", key, err)
		}
		if r.Src != site2 || r.Dst != site1 || !r.Reply() || r.HasKey != (key != 0) || r.Key != key || len(r.Payload) != 0 {
			t.Fatalf("key %d: reply parsed as %+v", key, r)
		}
		h, err = Parse(append(ipv4For(site1, site2, len(withNonce)), withNonce...))
		if err != nil {
			t.Fatalf("key %d: parsing the keepalive with a nonce: %v", key, err)
		}
		r, err = Parse(h.Payload)
		if err != nil || !r.Reply() || r.Key != key || !bytes.Equal(r.Payload, nonce) {
			t.Fatalf("key %d: the reply with a nonce parsed as %+v, %v", key, r, err)
		}
	}
}

// ipv4For is an outer IPv4 header as the kernel would write it.
func ipv4For(src, dst netip.Addr, payload int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	total := 20 + payload
	h[2], h[3] = byte(total>>8), byte(total)
	h[8], h[9] = 64, 47
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	c := ipv4Checksum(h)
	h[10], h[11] = byte(c>>8), byte(c)
	return h
}
