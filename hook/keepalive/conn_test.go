package keepalive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests use the socket over loopback, in a network namespace of
// their own: they need root (CAP_SYS_ADMIN and CAP_NET_RAW) and are
// skipped without it. No GRE module is needed: a raw socket gets its copy
// of a GRE packet whether or not a tunnel driver takes it.

var lo = netip.MustParseAddr("127.0.0.1")

// loopbackNS runs f on a thread moved to a new network namespace whose lo
// is up; the thread is never given back to other goroutines, so it dies
// with f's goroutine. Sockets opened in f stay in that namespace.
func loopbackNS(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // and never unlocked: the thread exits
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			errc <- err
			return
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; errors.Is(err, unix.EPERM) {
		t.Skipf("needs root for a network namespace and a raw socket: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// pair opens a Conn and a plain raw GRE socket (to send bare replies
// with), both in a fresh namespace.
func pair(t *testing.T) (*Conn, func(payload []byte)) {
	t.Helper()
	var c *Conn
	var fd int
	loopbackNS(t, func() error {
		var err error
		if c, err = Open(); err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
		return err
	})
	t.Cleanup(func() { c.Close(); unix.Close(fd) })
	to := &unix.SockaddrInet4{Addr: lo.As4()}
	return c, func(payload []byte) {
		if err := unix.Sendto(fd, payload, 0, to); err != nil {
			t.Fatalf("sending a GRE packet over loopback: %v", err)
		}
	}
}

// bareReply is a bare GRE header of protocol type 0, as a reflected keepalive
// arrives.
var bareReply = []byte{0, 0, 0, 0}

func TestReceiveCostsNoGoroutineNorAllocation(t *testing.T) {
	c, send := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	send(bareReply)
	if r, err := c.Receive(ctx); err != nil || !r.Reply() || r.Src != lo || len(r.Payload) != 0 {
		t.Fatalf("got %+v, %v; want a reply from %s with no payload", r, err, lo)
	}
	before := runtime.NumGoroutine()
	var bad error
	allocs := testing.AllocsPerRun(200, func() {
		send(bareReply)
		if r, err := c.Receive(ctx); err != nil || !r.Reply() {
			bad = err
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per packet received, want 0", allocs)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines after 200 packets, %d before: Receive leaves goroutines behind", after, before)
	}

	// A reply that brings a nonce back: in Received.Nonce, still free.
	nonce := make([]byte, NonceLen)
	for i := range nonce {
		nonce[i] = byte(i + 1)
	}
	withNonce := append(append([]byte(nil), bareReply...), nonce...)
	send(withNonce)
	if r, err := c.Receive(ctx); err != nil || !r.Reply() || !r.HasNonce || !bytes.Equal(r.Nonce[:], nonce) || r.Payload != nil {
		t.Fatalf("got %+v, %v; want a reply with nonce % x and no payload", r, err, nonce)
	}
	allocs = testing.AllocsPerRun(200, func() {
		send(withNonce)
		if r, err := c.Receive(ctx); err != nil || !r.HasNonce {
			bad = fmt.Errorf("%+v, %v", r, err)
		}
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per reply with a nonce received, want 0", allocs)
	}

	allocs = testing.AllocsPerRun(200, func() {
		if err := c.SendKeys(lo, lo, 7, 9); err != nil {
			bad = err
		}
		if err := c.SendNonce(lo, lo, 7, 9, nonce); err != nil {
			bad = err
		}
		// What the socket reads back: not a reply, and not counted.
		c.Receive(ctx)
		c.Receive(ctx)
	})
	if bad != nil {
		t.Fatal(bad)
	}
	if allocs > 2 {
		t.Errorf("%v allocations per two keepalives sent and read back (their payloads are copies), want 2", allocs)
	}
	if err := c.SendNonce(lo, lo, 0, 0, make([]byte, NonceLen+1)); err == nil || err.Error() != "sending a keepalive from 127.0.0.1 to 127.0.0.1: a nonce of 17 bytes, more than 16" {
		t.Errorf("a nonce too long: %v", err)
	}
}

func TestReceivedPayloadIsItsOwn(t *testing.T) {
	c, _ := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SendKeys(lo, lo, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.SendKeys(lo, lo, 3, 4); err != nil {
		t.Fatal(err)
	}
	first, err := c.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if want := PacketKeys(lo, lo, 1, 2)[8:]; !bytes.Equal(first.Payload, want) {
		t.Errorf("the first packet's payload became % x after a second Receive, want % x", first.Payload, want)
	}
}

func TestReceiveEndsWithItsContext(t *testing.T) {
	c, send := pair(t)

	// A deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := c.Receive(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 190*time.Millisecond {
		t.Errorf("Receive with a 200ms deadline: %v after %v, want DeadlineExceeded after 200ms", err, time.Since(start))
	}

	// A cancellation, with no deadline; and the deadline before is gone.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	_, err = c.Receive(ctx)
	if !errors.Is(err, context.Canceled) || time.Since(start) < 290*time.Millisecond || time.Since(start) > 5*time.Second {
		t.Errorf("Receive cancelled after 300ms: %v after %v, want Canceled after 300ms", err, time.Since(start))
	}
	if _, err := c.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive with a cancelled context: %v, want Canceled", err)
	}

	// A context cancelled after its last Receive does not cut short a
	// later Receive with another context.
	first, cancelFirst := context.WithCancel(context.Background())
	send(bareReply)
	if _, err := c.Receive(first); err != nil {
		t.Fatal(err)
	}
	second, cancelSecond := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelSecond()
	time.AfterFunc(100*time.Millisecond, cancelFirst)
	time.AfterFunc(400*time.Millisecond, func() { send(bareReply) })
	start = time.Now()
	if r, err := c.Receive(second); err != nil || !r.Reply() {
		t.Errorf("Receive with a second context while the first was cancelled: %+v, %v after %v; want the reply sent at 400ms", r, err, time.Since(start))
	}
}
