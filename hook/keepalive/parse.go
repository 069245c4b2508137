package keepalive

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Header is what Parse reads from an IPv4 packet carrying GRE, as a raw
// IPPROTO_GRE socket returns it on Linux: IPv4 header first.
type Header struct {
	// Src and Dst are the IPv4 addresses. On a reply, Src is the tunnel's
	// remote and Dst its local address.
	Src, Dst netip.Addr
	// Proto is the GRE protocol type: ProtoKeepalive on a reply.
	Proto uint16
	// Key is the GRE key if HasKey. A reply carries the key the sender put
	// in its keepalive's inner header.
	Key    uint32
	HasKey bool
	// Payload is what follows the GRE header, up to the IPv4 total length
	// or the end of what was read, whichever comes first. It aliases the
	// parsed bytes.
	Payload []byte
}

// Reply reports whether the packet is a keepalive reply: GRE protocol
// type 0. Whose reply it is, Src says.
func (h Header) Reply() bool { return h.Proto == ProtoKeepalive }

// Parse reads the IPv4 and GRE headers at the start of b. It accepts a
// packet cut short after the GRE header, as a small read buffer leaves it,
// and refuses anything that is not IPv4 carrying version 0 GRE, or that
// ends inside a header.
func Parse(b []byte) (Header, error) {
	if len(b) < ipv4HdrLen {
		return Header{}, fmt.Errorf("packet of %d bytes is shorter than an IPv4 header", len(b))
	}
	if v := b[0] >> 4; v != ipv4Version {
		return Header{}, fmt.Errorf("IP version %d, want 4", v)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4HdrLen {
		return Header{}, fmt.Errorf("IPv4 header length %d is below the minimum of 20", ihl)
	}
	if len(b) < ihl {
		return Header{}, fmt.Errorf("packet of %d bytes ends inside its %d-byte IPv4 header", len(b), ihl)
	}
	if p := b[9]; p != ipProtoGRE {
		return Header{}, fmt.Errorf("IP protocol %d, not GRE (47)", p)
	}
	// The kernel reassembles before a raw socket sees a packet, but a
	// capture or a caller may hand us a fragment.
	if frag := binary.BigEndian.Uint16(b[6:]); frag&0x1fff != 0 {
		return Header{}, fmt.Errorf("IPv4 fragment at offset %d has no GRE header", int(frag&0x1fff)*8)
	}
	h := Header{
		Src: netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}),
		Dst: netip.AddrFrom4([4]byte{b[16], b[17], b[18], b[19]}),
	}
	end := len(b)
	if total := int(binary.BigEndian.Uint16(b[2:])); total < end {
		end = total
	}
	if end < ihl {
		return Header{}, fmt.Errorf("IPv4 total length %d is shorter than its %d-byte header", end, ihl)
	}
	gre := b[ihl:end]
	if len(gre) < greHdrLen {
		return Header{}, fmt.Errorf("GRE header from %s truncated to %d bytes", h.Src, len(gre))
	}
	flags := binary.BigEndian.Uint16(gre)
	if v := flags & greVersionMask; v != 0 {
		return Header{}, fmt.Errorf("GRE version %d from %s, want 0", v, h.Src)
	}
	if flags&greFlagRouting != 0 {
		return Header{}, fmt.Errorf("GRE header from %s has the routing bit set", h.Src)
	}
	h.Proto = binary.BigEndian.Uint16(gre[2:])
	n := greHdrLen
	if flags&greFlagChecksum != 0 {
		n += 4 // checksum and reserved1
	}
	if flags&greFlagKey != 0 {
		if len(gre) < n+greKeyLen {
			return Header{}, fmt.Errorf("GRE header from %s ends inside its key", h.Src)
		}
		h.Key, h.HasKey = binary.BigEndian.Uint32(gre[n:]), true
		n += greKeyLen
	}
	if flags&greFlagSeq != 0 {
		n += 4
	}
	if len(gre) < n {
		return Header{}, fmt.Errorf("GRE header from %s truncated to %d of its %d bytes", h.Src, len(gre), n)
	}
	h.Payload = gre[n:]
	return h, nil
}
