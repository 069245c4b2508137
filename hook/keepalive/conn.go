package keepalive

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

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

	// Send's buffers, reused under sendMu, and its callback, made once,
	// so that a keepalive costs no allocation.
	sendMu sync.Mutex
	pkt    [maxPacketLen]byte
	pktLen int
	oob    []byte // an IP_PKTINFO message; its source is set per packet
	to     unix.SockaddrInet4
	sendFn func(fd uintptr) bool
	sendE  error

	// Receive's buffer and callback. Receive is called from one goroutine
	// at a time, so they need no lock.
	buf    [readSize]byte
	n      int
	readE  error
	readFn func(fd uintptr) bool

	// wakeMu guards what wakes a read when its context is done: the
	// context's Done channel being watched, the channel that stops the
	// goroutine watching it, and the read deadline last set.
	wakeMu   sync.Mutex
	waking   <-chan struct{}
	stopWake chan struct{}
	deadline time.Time
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
	c := &Conn{f: f, rc: rc, oob: unix.PktInfo4(&unix.Inet4Pktinfo{})}
	c.sendFn = func(fd uintptr) bool {
		c.sendE = unix.Sendmsg(int(fd), c.pkt[:c.pktLen], c.oob, &c.to, 0)
		return c.sendE != unix.EAGAIN
	}
	// read(2) on a raw socket returns the IPv4 packet, whose header names
	// the source: recvmsg(2)'s source address would cost, in x/sys, an
	// allocation and a getsockopt(2) per packet.
	c.readFn = func(fd uintptr) bool {
		c.n, c.readE = unix.Read(int(fd), c.buf[:])
		return c.readE != unix.EAGAIN
	}
	return c, nil
}

// SetMark marks every packet the socket sends with fwmark mark (SO_MARK),
// as gre-hook's tunnels mark their outer packets: the rule that sends
// unmarked traffic to a default_route tunnel's table then skips the
// keepalives, and they leave by the main table (hook/POLICY-ROUTING.md).
func (c *Conn) SetMark(mark uint32) error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("marking the raw GRE socket's packets with fwmark %#x: %w", mark, err)
	}
	return nil
}

// Close closes the socket; a Receive in progress returns an error.
func (c *Conn) Close() error {
	c.wakeMu.Lock()
	if c.stopWake != nil {
		close(c.stopWake)
		c.stopWake, c.waking = nil, nil
	}
	c.wakeMu.Unlock()
	return c.f.Close()
}

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
	return c.SendNonce(local, remote, okey, ikey, nil)
}

// SendNonce sends one keepalive built by PacketNonce: nonce, at most
// NonceLen bytes, comes back in the reply (Received.Nonce).
func (c *Conn) SendNonce(local, remote netip.Addr, okey, ikey uint32, nonce []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	pkt, ok := appendPacket(c.pkt[:0], local, remote, okey, ikey, nonce)
	if !ok {
		if len(nonce) > NonceLen {
			return fmt.Errorf("sending a keepalive from %s to %s: a nonce of %d bytes, more than %d", local, remote, len(nonce), NonceLen)
		}
		return fmt.Errorf("sending a keepalive from %s to %s: only IPv4 tunnels are supported", local, remote)
	}
	c.pktLen = len(pkt)
	// The IP_PKTINFO message's data follows its header.
	info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&c.oob[unix.CmsgLen(0)]))
	info.Spec_dst = local.Unmap().As4()
	c.to.Addr = remote.Unmap().As4()
	c.sendE = nil
	err := c.rc.Write(c.sendFn)
	if err == nil {
		err = c.sendE
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
	// Nonce and HasNonce: a reply with exactly NonceLen bytes after its
	// GRE header, as SendNonce's keepalives come back, has them here, and
	// no Payload.
	Nonce    [NonceLen]byte
	HasNonce bool
}

// Receive waits for the next GRE packet until ctx is done. It skips what
// Parse refuses. Without a filter (SetFilter) it returns every GRE packet
// the host receives, tunnel traffic included, from any source: the caller
// picks by Src. It sleeps in the kernel while nothing arrives. The
// packet's Payload is a copy of its own (nil when empty, as on a reply
// without a nonce), except on a reply with a nonce: that is in Nonce.
//
// Receive is safe to call from one goroutine while others Send, not from
// two goroutines at once.
//
// A packet costs one read(2) and no allocation when it has no payload or
// is a reply with a nonce, and no goroutine: the goroutine that wakes a read when ctx is done (context
// cancellation cannot reach the poller otherwise) is started once per
// context, not once per call, and lives until that context is done, a call
// with another context comes, or Close. So a reader that calls Receive in
// a loop with the same ctx, as the watcher does, starts one in all.
func (c *Conn) Receive(ctx context.Context) (Received, error) {
	if err := ctx.Err(); err != nil {
		return Received{}, err
	}
	if err := c.follow(ctx); err != nil {
		return Received{}, err
	}
	for {
		c.readE = nil
		err := c.rc.Read(c.readFn)
		if err == nil {
			err = c.readE
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
		h, perr := Parse(c.buf[:c.n])
		if perr != nil {
			continue
		}
		// The buffer is read into again by the next call.
		r := Received{At: at}
		switch {
		case h.Reply() && len(h.Payload) == NonceLen:
			copy(r.Nonce[:], h.Payload)
			r.HasNonce = true
			h.Payload = nil
		case len(h.Payload) == 0:
			h.Payload = nil
		default:
			h.Payload = append([]byte(nil), h.Payload...)
		}
		r.Header = h
		return r, nil
	}
}

// follow makes ctx the context that the socket's reads serve: the read
// deadline is ctx's, and when ctx is done a read in progress returns. A
// context already followed costs nothing more; contexts are told apart by
// their Done channel, which is what cancels them.
func (c *Conn) follow(ctx context.Context) error {
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	if done := ctx.Done(); done != c.waking || c.stopWake == nil && done != nil {
		if c.stopWake != nil {
			close(c.stopWake)
			c.stopWake = nil
		}
		c.waking = done
		if done != nil {
			stop := make(chan struct{})
			c.stopWake = stop
			go c.wake(done, stop)
		}
	}
	deadline, _ := ctx.Deadline() // zero: none
	if !deadline.Equal(c.deadline) {
		if err := c.f.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("raw GRE socket: %w", err)
		}
		c.deadline = deadline
	}
	return nil
}

// wake waits for done and then cuts short the read in progress, if done
// is still what the reads serve: a later call with another context has
// stopped it (stop) or taken over under wakeMu.
func (c *Conn) wake(done <-chan struct{}, stop <-chan struct{}) {
	select {
	case <-done:
		c.wakeMu.Lock()
		defer c.wakeMu.Unlock()
		if c.waking == done {
			past := time.Unix(1, 0)
			c.f.SetReadDeadline(past)
			c.deadline = past
			c.stopWake, c.waking = nil, nil
		}
	case <-stop:
	}
}
