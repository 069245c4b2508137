//go:build realkernel

package realkernel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// spoofedDelivered sends, from `from`, UDP packets whose source is src (an
// address of the receiving router) to dst (another address of it) on
// port, routed by from's kernel into the tunnel to the receiver; it
// reports whether a socket listening on the receiver's namespace got one
// within a second. A raw IPPROTO_RAW socket writes the inner header as
// given: the sender's kernel does not check the source.
func spoofedDelivered(t *testing.T, from, to *netns, src, dst netip.Addr, port int) bool {
	t.Helper()
	var pc net.PacketConn
	if _, err := inNetns(to.name, func() (string, error) {
		var err error
		pc, err = net.ListenPacket("udp4", ":"+itoa(port))
		return "", err
	}); err != nil {
		t.Fatalf("listening in %s: %v", to.name, err)
	}
	defer pc.Close()
	var fd int
	if _, err := inNetns(from.name, func() (string, error) {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return "", err
	}); err != nil {
		t.Fatalf("raw socket in %s: %v", from.name, err)
	}
	defer unix.Close(fd)
	payload := []byte("spoofed")
	pkt := make([]byte, 20+8+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	s4, d4 := src.As4(), dst.As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], uint16(port))
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload) // UDP checksum 0: none, as IPv4 allows
	for i := 0; i < 3; i++ {
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: d4}); err != nil {
			t.Fatalf("sending the spoofed packet: %v", err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, addr, err := pc.ReadFrom(buf)
	if err != nil {
		return false
	}
	t.Logf("delivered on %s: %q from %v", to.name, buf[:n], addr)
	return true
}

func itoa(i int) string {
	b := []byte{}
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
