// Package keepalive is the wire half of GRE keepalives as Cisco routers
// send them: a GRE packet to the remote whose payload is a second GRE
// packet addressed back to us (protocol type 0), which the peer's tunnel
// decapsulates and routes back out of its underlay without knowing of
// keepalives. The watcher puts a nonce after the inner header, and the
// reply brings it back. A Linux peer reflects only with accept_local=1 and
// a loose or no rp_filter on its tunnel, and forwarding on. IPv4 outer
// headers over gre only.
package keepalive

import (
	"encoding/binary"
	"net/netip"
)

// The fields of a GRE header (RFC 2784, with the key of RFC 2890) that
// keepalives use.
const (
	greFlagChecksum = 0x8000
	greFlagRouting  = 0x4000 // RFC 1701's routing bit; Linux rejects it
	greFlagKey      = 0x2000
	greFlagSeq      = 0x1000
	greVersionMask  = 0x0007

	// ProtoIPv4 is the GRE protocol type of an IPv4 payload: the outer
	// GRE header of a keepalive.
	ProtoIPv4 = 0x0800
	// ProtoKeepalive is the GRE protocol type of the inner header, and so
	// of the reply.
	ProtoKeepalive = 0

	ipProtoGRE  = 47
	ipv4HdrLen  = 20
	greHdrLen   = 4
	greKeyLen   = 4
	innerTTL    = 255
	ipv4FlagDF  = 0x4000
	ipv4Version = 4
)

// Packet returns the keepalive to hand to a raw IPPROTO_GRE socket (the
// kernel adds the outer IPv4 header) on a tunnel from local to remote. A
// nonzero okey is the tunnel's output key: it goes in the outer GRE header,
// where the peer's tunnel expects it as its input key, and also in the inner
// GRE header, which is what comes back. That suits a tunnel with one key for
// both directions; PacketKeys covers separate input and output keys.
//
// Packet returns nil unless both addresses are IPv4.
func Packet(local, remote netip.Addr, okey uint32) []byte {
	return PacketKeys(local, remote, okey, okey)
}

// PacketKeys is Packet for a tunnel with separate keys. okey, the peer's
// input key, goes in the outer GRE header. ikey goes in the inner one, so
// the reply arrives carrying our input key, which is the peer's output key,
// as the peer's own traffic does. Zero means no key.
//
// On Linux the inner key decides little on the way back. The raw socket
// gets its copy of a reply first, whatever happens next. The GRE
// demultiplexer then drops, silently, any GRE packet shorter than 12 bytes
// after its IPv4 header: a reply without a nonce is 4 or 8. One with a
// nonce is 20 or 24, so the tunnel whose input key it carries receives it,
// as a packet of protocol type 0 that nothing takes: it counts in the
// tunnel's receive statistics and is dropped.
func PacketKeys(local, remote netip.Addr, okey, ikey uint32) []byte {
	return PacketNonce(local, remote, okey, ikey, nil)
}

// PacketNonce is PacketKeys with nonce after the inner GRE header, where
// the reply brings it back. It returns nil unless both addresses are IPv4
// and nonce is at most NonceLen bytes.
func PacketNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) []byte {
	pkt, ok := appendPacket(nil, local, remote, okey, ikey, nonce)
	if !ok {
		return nil
	}
	return pkt
}

// appendPacket appends PacketNonce's packet to dst, allocating nothing
// when dst has room for it (maxPacketLen). It reports false, with dst as it
// was, unless both addresses are IPv4 and the nonce is at most NonceLen
// bytes.
func appendPacket(dst []byte, local, remote netip.Addr, okey, ikey uint32, nonce []byte) ([]byte, bool) {
	local, remote = local.Unmap(), remote.Unmap()
	if !local.Is4() || !remote.Is4() || len(nonce) > NonceLen {
		return dst, false
	}
	dst = appendGREHeader(dst, ProtoIPv4, okey)
	innerLen := ipv4HdrLen + greHdrLen + len(nonce)
	if ikey != 0 {
		innerLen += greKeyLen
	}
	var hdr [ipv4HdrLen]byte
	hdr[0] = ipv4Version<<4 | ipv4HdrLen/4
	binary.BigEndian.PutUint16(hdr[2:], uint16(innerLen))
	// DF set and ID 0: a datagram that may not be fragmented needs no
	// unique ID (RFC 6864), and this one is 24 to 44 bytes.
	binary.BigEndian.PutUint16(hdr[6:], ipv4FlagDF)
	hdr[8] = innerTTL
	hdr[9] = ipProtoGRE
	r, l := remote.As4(), local.As4()
	copy(hdr[12:16], r[:])
	copy(hdr[16:20], l[:])
	binary.BigEndian.PutUint16(hdr[10:], ipv4Checksum(hdr[:]))
	dst = append(dst, hdr[:]...)
	dst = appendGREHeader(dst, ProtoKeepalive, ikey)
	return append(dst, nonce...), true
}

// maxPacketLen is the longest packet PacketNonce makes: two keyed GRE
// headers, an IPv4 header and a nonce.
const maxPacketLen = 2*(greHdrLen+greKeyLen) + ipv4HdrLen + NonceLen

// appendGREHeader appends a version 0 GRE header with the protocol type
// and, if key is not zero, the key.
func appendGREHeader(dst []byte, proto uint16, key uint32) []byte {
	var b [greHdrLen + greKeyLen]byte
	binary.BigEndian.PutUint16(b[2:], proto)
	if key == 0 {
		return append(dst, b[:greHdrLen]...)
	}
	binary.BigEndian.PutUint16(b[0:], greFlagKey)
	binary.BigEndian.PutUint32(b[4:], key)
	return append(dst, b[:]...)
}

// ipv4Checksum is the Internet checksum (RFC 1071) of an IPv4 header whose
// checksum field is zero.
func ipv4Checksum(hdr []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
