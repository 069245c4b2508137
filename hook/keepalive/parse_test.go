package keepalive

import (
	"testing"
)

// reply is a keepalive reply as a raw socket on site1 reads it: what site1
// sent as the inner packet, after the peer forwarded it (TTL 254, so a new
// checksum; Parse does not check it, the kernel has).
func reply(t *testing.T, key uint32) []byte {
	t.Helper()
	p := Packet(site1, site2, key)
	inner := append([]byte(nil), p[len(appendGREHeader(nil, ProtoIPv4, key)):]...)
	inner[8] = 254
	return inner
}

func TestParseReply(t *testing.T) {
	h, err := Parse(reply(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if h.Src != site2 || h.Dst != site1 || !h.Reply() || h.HasKey || h.Key != 0 || len(h.Payload) != 0 {
		t.Fatalf("parsed %+v", h)
	}
	h, err = Parse(reply(t, 100))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Reply() || !h.HasKey || h.Key != 100 {
		t.Fatalf("keyed reply parsed as %+v", h)
	}
}

// gre is an IPv4 packet from site2 to site1 carrying the given GRE bytes.
func gre(b ...byte) []byte {
	return append(ipv4For(site2, site1, len(b)), b...)
}

func TestParseGREFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		proto   uint16
		key     uint32
		hasKey  bool
		payload int
	}{
		{"checksum, key and sequence", gre(0xb0, 0, 0x08, 0, 0xaa, 0xbb, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0x45), ProtoIPv4, 9, true, 1},
		{"checksum only", gre(0x80, 0, 0x86, 0xdd, 1, 2, 0, 0, 0x60), 0x86dd, 0, false, 1},
		{"sequence only", gre(0x10, 0, 0, 0, 0, 0, 0, 5), 0, 0, false, 0},
		{"transparent ethernet", gre(0, 0, 0x65, 0x58, 1, 2, 3), 0x6558, 0, false, 3},
	} {
		h, err := Parse(tc.pkt)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if h.Proto != tc.proto || h.Key != tc.key || h.HasKey != tc.hasKey || len(h.Payload) != tc.payload {
			t.Errorf("%s: parsed %+v", tc.name, h)
		}
	}
}

func TestParseTruncatedRead(t *testing.T) {
	// A data packet read into a buffer shorter than it: the total length
	// says more, the headers are all there.
	pkt := gre(0x20, 0, 0x08, 0, 0, 0, 0, 1)
	pkt[2], pkt[3] = 0x05, 0xdc // 1500
	h, err := Parse(pkt)
	if err != nil || h.Proto != ProtoIPv4 || h.Key != 1 {
		t.Fatalf("parsed %+v, %v", h, err)
	}
	// Ethernet padding after a short packet is not payload.
	padded := append(reply(t, 0), 0, 0, 0, 0, 0, 0)
	if h, err := Parse(padded); err != nil || len(h.Payload) != 0 {
		t.Fatalf("padded reply parsed as %+v, %v", h, err)
	}
}

func TestParseRefuses(t *testing.T) {
	withOptions := gre(0, 0, 0, 0)
	withOptions[0] = 0x46 // a 24-byte header, and the GRE bytes become its option
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string
	}{
		{"empty", nil, "packet of 0 bytes is shorter than an IPv4 header"},
		{"IPv6", append([]byte{0x60}, make([]byte, 39)...), "IP version 6, want 4"},
		{"header length 16", func() []byte { b := gre(0, 0, 0, 0); b[0] = 0x44; return b }(), "IPv4 header length 16 is below the minimum of 20"},
		{"options past the end", func() []byte { b := gre(); b[0] = 0x4f; return b }(), "packet of 20 bytes ends inside its 60-byte IPv4 header"},
		{"not GRE", func() []byte { b := gre(0, 0, 0, 0); b[9] = 17; return b }(), "IP protocol 17, not GRE (47)"},
		{"fragment", func() []byte { b := gre(0, 0, 0, 0); b[7] = 3; return b }(), "IPv4 fragment at offset 24 has no GRE header"},
		{"total length inside the header", func() []byte { b := gre(0, 0, 0, 0); b[3] = 10; return b }(), "IPv4 total length 10 is shorter than its 20-byte header"},
		{"no GRE header", gre(0, 0), "GRE header from 203.0.113.1 truncated to 2 bytes"},
		{"options leave no GRE header", withOptions, "GRE header from 203.0.113.1 truncated to 0 bytes"},
		{"PPTP's enhanced GRE", gre(0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0), "GRE version 1 from 203.0.113.1, want 0"},
		{"routing bit", gre(0x40, 0, 0x08, 0), "GRE header from 203.0.113.1 has the routing bit set"},
		{"key cut off", gre(0x20, 0, 0x08, 0, 0, 0), "GRE header from 203.0.113.1 ends inside its key"},
		{"sequence cut off", gre(0x10, 0, 0x08, 0, 0), "GRE header from 203.0.113.1 truncated to 5 of its 8 bytes"},
		{"checksum cut off", gre(0x80, 0, 0x08, 0), "GRE header from 203.0.113.1 truncated to 4 of its 8 bytes"},
	} {
		_, err := Parse(tc.pkt)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, err, tc.want)
		}
	}
}
