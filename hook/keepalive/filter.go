package keepalive

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// maxFilterPeers bounds SetFilter's list: a classic BPF conditional jump
// reaches at most 255 instructions ahead, and the program tests one peer
// per instruction.
const maxFilterPeers = 250

// SetFilter makes the kernel drop, before they are queued on the socket,
// the GRE packets whose source is not one of peers (any source if peers is
// empty) and, with repliesOnly, all but the replies to SendNonce's
// keepalives: GRE protocol type 0, and after the IPv4 header exactly a GRE
// header with no flags or the key alone, and a nonce. That keeps the
// tunnels' own traffic, of which the socket otherwise gets a copy of every
// packet, from waking the reader or filling the receive buffer until a
// reply is dropped; and a forger's replies without a nonce too. With
// repliesOnly, the peer's own keepalives and data no longer reach the
// socket.
//
// Packets queued before the filter took effect are discarded, so call it
// before the first Receive, not while one is running.
func (c *Conn) SetFilter(peers []netip.Addr, repliesOnly bool) error {
	prog, err := filterProgram(peers, repliesOnly)
	if err != nil {
		return err
	}
	var serr error
	err = c.rc.Control(func(fd uintptr) {
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); serr != nil {
			return
		}
		buf := make([]byte, readSize)
		for {
			if _, _, _, _, err := unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT); err != nil {
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("attaching a BPF filter to the raw GRE socket: %w", err)
	}
	return nil
}

// filterProgram is the classic BPF program for SetFilter. A raw IPv4
// socket's filter sees the packet from its IPv4 header on.
func filterProgram(peers []netip.Addr, repliesOnly bool) ([]unix.SockFilter, error) {
	if len(peers) > maxFilterPeers {
		return nil, fmt.Errorf("a filter holds at most %d peers, not %d", maxFilterPeers, len(peers))
	}
	const (
		ldAbsW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldIndH  = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		ldAbsH  = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldxMshB = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		subX    = unix.BPF_ALU | unix.BPF_SUB | unix.BPF_X
		jeqK    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK    = unix.BPF_RET | unix.BPF_K
		keepAll = 0xffffffff
	)
	var prog []unix.SockFilter
	if len(peers) > 0 {
		// A = source address; on a match jump past the drop below.
		prog = append(prog, unix.SockFilter{Code: ldAbsW, K: 12})
		for i, p := range peers {
			p = p.Unmap()
			if !p.Is4() {
				return nil, fmt.Errorf("filter peer %s is not an IPv4 address", p)
			}
			a := p.As4()
			prog = append(prog, unix.SockFilter{Code: jeqK, Jt: uint8(len(peers) - i), K: binary.BigEndian.Uint32(a[:])})
		}
		prog = append(prog, unix.SockFilter{Code: retK, K: 0})
	}
	if repliesOnly {
		prog = append(prog,
			// X = IPv4 header length; A = GRE protocol type, 2 bytes on.
			unix.SockFilter{Code: ldxMshB, K: 0},
			unix.SockFilter{Code: ldIndH, K: 2},
			unix.SockFilter{Code: jeqK, Jt: 0, Jf: 5, K: ProtoKeepalive},
			// A = IPv4 total length less the header: what the GRE
			// header and the nonce take.
			unix.SockFilter{Code: ldAbsH, K: 2},
			unix.SockFilter{Code: subX},
			unix.SockFilter{Code: jeqK, Jt: 1, Jf: 0, K: greHdrLen + NonceLen},
			unix.SockFilter{Code: jeqK, Jt: 0, Jf: 1, K: greHdrLen + greKeyLen + NonceLen},
		)
	}
	prog = append(prog, unix.SockFilter{Code: retK, K: keepAll})
	if repliesOnly {
		prog = append(prog, unix.SockFilter{Code: retK, K: 0})
	}
	return prog, nil
}
