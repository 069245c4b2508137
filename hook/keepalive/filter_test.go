package keepalive

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF runs the few classic BPF instructions filterProgram uses, as the
// kernel would on a packet, and returns the filter's verdict: how many bytes
// to keep, 0 to drop. A load past the end drops the packet, as in the
// kernel.
func runBPF(t *testing.T, prog []unix.SockFilter, pkt []byte) uint32 {
	t.Helper()
	var a, x uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if int(in.K)+4 > len(pkt) {
				return 0
			}
			a = binary.BigEndian.Uint32(pkt[in.K:])
		case unix.BPF_LD | unix.BPF_H | unix.BPF_IND:
			off := int(x) + int(in.K)
			if off+2 > len(pkt) {
				return 0
			}
			a = uint32(binary.BigEndian.Uint16(pkt[off:]))
		case unix.BPF_LD | unix.BPF_H | unix.BPF_ABS:
			if int(in.K)+2 > len(pkt) {
				return 0
			}
			a = uint32(binary.BigEndian.Uint16(pkt[in.K:]))
		case unix.BPF_ALU | unix.BPF_SUB | unix.BPF_X:
			a -= x
		case unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH:
			if int(in.K) >= len(pkt) {
				return 0
			}
			x = uint32(pkt[in.K]&0xf) * 4
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if a == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: opcode %#x is not one the interpreter knows", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

func TestFilterProgram(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.7")
	third := netip.MustParseAddr("192.0.2.8")
	// A bare reply: what a forger sends, and Cisco's.
	replyFrom := func(src netip.Addr) []byte { return append(ipv4For(src, site1, 4), 0, 0, 0, 0) }
	// The inner packet of a keepalive with a nonce, as the peer reflects it.
	nonce := make([]byte, NonceLen)
	nonceReply := func(src netip.Addr, key uint32) []byte {
		return PacketNonce(site1, src, key, key, nonce)[4+4*b2i(key != 0):]
	}
	dataFrom := func(src netip.Addr) []byte { return append(ipv4For(src, site1, 8), 0x20, 0, 0x08, 0, 0, 0, 0, 1) }
	optionsReply := func(src netip.Addr) []byte {
		// A 24-byte IPv4 header: the protocol type is 4 bytes further on,
		// and the total length 4 more.
		b := nonceReply(src, 0)
		b = append(b[:20:20], append([]byte{0, 0, 0, 0}, b[20:]...)...)
		b[0] = 0x46
		b[3] += 4
		return b
	}
	long := func(b []byte) []byte {
		b = append(b, 0)
		b[3]++
		return b
	}
	for _, tc := range []struct {
		name        string
		peers       []netip.Addr
		repliesOnly bool
		pkt         []byte
		keep        bool
	}{
		{"no filter at all", nil, false, dataFrom(other), true},
		{"peer's reply", []netip.Addr{site2}, false, replyFrom(site2), true},
		{"peer's data", []netip.Addr{site2}, false, dataFrom(site2), true},
		{"stranger's reply", []netip.Addr{site2}, false, replyFrom(other), false},
		{"second peer", []netip.Addr{site2, other}, false, dataFrom(other), true},
		{"not a peer of two", []netip.Addr{site2, other}, false, dataFrom(third), false},
		{"replies only: a reply with a nonce", []netip.Addr{site2}, true, nonceReply(site2, 0), true},
		{"replies only: a keyed reply with a nonce", []netip.Addr{site2}, true, nonceReply(site2, 7), true},
		{"replies only: a bare reply", []netip.Addr{site2}, true, replyFrom(site2), false},
		{"replies only: a byte more than a nonce", []netip.Addr{site2}, true, long(nonceReply(site2, 0)), false},
		{"replies only: data", []netip.Addr{site2}, true, dataFrom(site2), false},
		{"replies only: stranger", []netip.Addr{site2}, true, nonceReply(other, 0), false},
		{"replies only, any source", nil, true, nonceReply(other, 0), true},
		{"replies only, any source: data", nil, true, dataFrom(other), false},
		{"replies only: IPv4 options", []netip.Addr{site2}, true, optionsReply(site2), true},
		{"replies only: cut short", []netip.Addr{site2}, true, nonceReply(site2, 0)[:21], false},
		{"IPv4-mapped peer", []netip.Addr{netip.AddrFrom16(site2.As16())}, false, replyFrom(site2), true},
	} {
		prog, err := filterProgram(tc.peers, tc.repliesOnly)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := runBPF(t, prog, tc.pkt) != 0; got != tc.keep {
			t.Errorf("%s: kept %v, want %v", tc.name, got, tc.keep)
		}
	}
}

func TestFilterProgramManyPeers(t *testing.T) {
	peers := make([]netip.Addr, maxFilterPeers)
	for i := range peers {
		peers[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	prog, err := filterProgram(peers, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, maxFilterPeers / 2, maxFilterPeers - 1} {
		pkt := PacketNonce(site1, peers[i], 0, 0, make([]byte, NonceLen))[4:]
		if runBPF(t, prog, pkt) == 0 {
			t.Errorf("peer %d (%s) dropped", i, peers[i])
		}
	}
	_, err = filterProgram(append(peers, site2), false)
	if err == nil || !strings.Contains(err.Error(), "at most 250 peers, not 251") {
		t.Fatalf("251 peers: %v", err)
	}
	_, err = filterProgram([]netip.Addr{netip.MustParseAddr("2001:db8::1")}, false)
	if err == nil || err.Error() != "filter peer 2001:db8::1 is not an IPv4 address" {
		t.Fatalf("an IPv6 peer: %v", err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
