package keepalive

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one raw IPv4 socket of protocol GRE (47). It sends keepalives for
// any number of tunnels, and receives a copy of every GRE packet that
// reaches this network namespace, whatever a tunnel then does with it.
//
// The socket lives in the network namespace of the thread that opened it.
type Conn struct {
	f  *os.File
	rc syscall.RawConn
}

// outerTTL is the outer header's TTL, that of the tunnels gre-hook makes.
const outerTTL = 255

// readSize is enough for the largest IPv4 header (60 bytes), the largest
// GRE header (16) and a keepalive's inner headers. A longer packet is cut
// short; only its headers matter here.
const readSize = 256

// Open opens the socket. It needs CAP_NET_RAW.
func Open() (*Conn, error) {
	// Nonblocking, so that os.NewFile hands the descriptor to Go's
	// network poller: a Receive then sleeps in epoll, and deadlines work.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
	if err != nil {
		return nil, fmt.Errorf("opening a raw GRE socket: %w", err)
	}
	// IP_HDRINCL stays off (only IPPROTO_RAW implies it): the kernel
	// writes the outer IPv4 header, routing it like the tunnel's own.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, outerTTL); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting the TTL of the raw GRE socket to %d: %w", outerTTL, err)
	}
	f := os.NewFile(uintptr(fd), "gre-keepalive")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw GRE socket: %w", err)
	}
	return &Conn{f: f, rc: rc}, nil
}

// Close closes the socket; a Receive in progress returns an error.
func (c *Conn) Close() error { return c.f.Close() }

// Send sends one keepalive on the tunnel from local to remote with output
// key okey (0 for none), built by Packet.
func (c *Conn) Send(local, remote netip.Addr, okey uint32) error {
	return c.SendKeys(local, remote, okey, okey)
}

// SendKeys sends one keepalive built by PacketKeys.
//
// The outer source is local, set per packet with IP_PKTINFO, so one socket
// serves tunnels with different local addresses; the kernel refuses a
// local that is not one of this host's addresses. The outer packet is
// routed like the tunnel's own encapsulated packets: a lookup of remote
// from local, with no output interface and no mark, as for a tunnel made
// without "dev" and without a fwmark, which is how gre-hook makes them.
// So the keepalive leaves through the underlay whenever the tunnel's own
// traffic does: through the route to remote that the underlay provides, or
// the host route gre-hook pins for default_route. If remote were routed
// into the tunnel itself, the tunnel would be broken too.
func (c *Conn) SendKeys(local, remote netip.Addr, okey, ikey uint32) error {
	pkt := PacketKeys(local, remote, okey, ikey)
	if pkt == nil {
		return fmt.Errorf("sending a keepalive from %s to %s: only IPv4 tunnels are supported", local, remote)
	}
	info := unix.Inet4Pktinfo{Spec_dst: local.Unmap().As4()}
	oob := unix.PktInfo4(&info)
	to := &unix.SockaddrInet4{Addr: remote.Unmap().As4()}
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), pkt, oob, to, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sending a keepalive from %s to %s: %w", local, remote, err)
	}
	return nil
}

// Received is one GRE packet that reached the socket.
type Received struct {
	Header
	// At is when the read returned, on this process's clock.
	At time.Time
}

// Receive waits for the next GRE packet until ctx is done. It skips what
// Parse refuses. Without a filter (SetFilter) it returns every GRE packet
// the host receives, tunnel traffic included, from any source: the caller
// picks by Src. It sleeps in the kernel while nothing arrives.
//
// Receive is safe to call from one goroutine while others Send.
func (c *Conn) Receive(ctx context.Context) (Received, error) {
	if err := ctx.Err(); err != nil {
		return Received{}, err
	}
	deadline, _ := ctx.Deadline() // zero: none
	if err := c.f.SetReadDeadline(deadline); err != nil {
		return Received{}, fmt.Errorf("raw GRE socket: %w", err)
	}
	// Wake the read when ctx is cancelled before its deadline. The
	// watcher is gone before Receive returns, so it cannot cut short a
	// later call's wait.
	stop, gone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(gone)
		select {
		case <-ctx.Done():
			c.f.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	defer func() { close(stop); <-gone }()

	buf := make([]byte, readSize)
	for {
		var n int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				return Received{}, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Received{}, context.DeadlineExceeded
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return Received{}, fmt.Errorf("reading the raw GRE socket: %w", err)
		}
		at := time.Now()
		h, perr := Parse(buf[:n])
		if perr != nil {
			continue
		}
		return Received{Header: h, At: at}, nil
	}
}
