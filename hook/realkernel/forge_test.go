//go:build realkernel

package realkernel

import (
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWatchForgedReplies: a host off the path, behind the internet router,
// forges the peer's GRE packets at r1 with the peer's address as their
// source and the tunnel's key, 10 times a second of each kind: bare
// keepalive replies (Cisco's format, 24 bytes), replies with made-up
// nonces, and tunnel data. With the path to the peer cut they must not
// keep the tunnel alive: the watcher declares it dead within interval ×
// (retries + 1) + 1 s and withdraws its routes. Once the path is back the
// plain peer's reflections bring it alive again, the forger still at it.
func TestWatchForgedReplies(t *testing.T) {
	t.Parallel()
	const interval, retries = time.Second, 3
	s := plainPeerSites(t)

	// The forger, and an internet router that does not filter spoofed
	// sources, as much of the internet does not.
	evil := newNS(t)
	veth(t, evil, "eth0", s.inet, "to-evil")
	s.inet.ip("addr", "add", "192.0.2.1/24", "dev", "to-evil")
	s.inet.ip("link", "set", "to-evil", "up")
	s.inet.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.to-evil.rp_filter=0")
	evil.ip("addr", "add", "192.0.2.66/24", "dev", "eth0")
	evil.ip("link", "set", "eth0", "up")
	evil.ip("route", "add", "default", "via", "192.0.2.1")

	cfg := writeConfig(t, kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", ""))
	s.r1 = withCleanState(s.r1)
	s.r1.up(cfg, "eth1")
	tunnelRoutes := len(s.r1.routesVia("gre-site2"))
	// What reaches r1 from the peer's address, forged or not.
	arrived := kaListen(t, kaOpen(t, s.r1))
	w := startWatch(t, s.r1, cfg)
	w.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
	var alive bool
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !alive; time.Sleep(200 * time.Millisecond) {
		l := s.r1.liveness()
		alive = len(l) == 1 && l[0].Alive && l[0].LastReply != nil
	}
	if !alive {
		t.Fatalf("no reply from the plain peer before the test: %+v", s.r1.liveness())
	}

	sent := forge(t, evil, 100*time.Millisecond)
	time.Sleep(interval)
	drain(arrived)
	cutAt := time.Now()
	s.inet.ip("link", "set", "to-r2", "down")
	deadAt, goneAt := w.until(cutAt, "gre-site2: peer 203.0.113.1 dead: no reply for ", func() bool { return len(s.r1.routesVia("gre-site2")) == 0 })
	// And it stays dead while the forger goes on.
	time.Sleep(5 * interval)
	if strings.Contains(w.log.String(), "alive again") {
		t.Errorf("forged packets brought the tunnel alive:\n%s", w.log.String())
	}
	var bare, nonced, data, other int
	for len(arrived) > 0 {
		r := <-arrived
		switch {
		case r.Src != kaSite2:
			other++
		case r.Reply() && r.HasNonce:
			nonced++
		case r.Reply() && len(r.Payload) == 0:
			bare++
		case r.Proto == 0x0800:
			data++
		default:
			other++
		}
	}
	forgedFor := time.Since(cutAt)
	t.Logf("while cut (%.1fs): r1 received from %s %d bare replies, %d replies with a nonce, %d data packets (%d other GRE); the forger had sent %d in all",
		forgedFor.Seconds(), kaSite2, bare, nonced, data, other, atomic.LoadInt64(sent))
	// The premise: the forgeries did reach r1, some 10 a second of each.
	if least := int(forgedFor.Seconds()) * 5; bare < least || nonced < least || data < least {
		t.Fatalf("fewer than %d of each forgery reached r1, so the test proves nothing", least)
	}

	time.Sleep(interval / 2)
	restoreAt := time.Now()
	s.inet.ip("link", "set", "to-r2", "up")
	aliveAt, backAt := w.until(restoreAt, "gre-site2: peer 203.0.113.1 alive again after ", func() bool {
		return len(s.r1.routesVia("gre-site2")) == tunnelRoutes
	})
	bound := interval*(retries+1) + time.Second
	t.Logf("forged replies 10/s of each kind; interval %v, retries %d: after the cut, dead in %.2fs and routes gone in %.2fs (bound %v); after the restore, alive in %.2fs and routes back in %.2fs",
		interval, retries, deadAt.Sub(cutAt).Seconds(), goneAt.Sub(cutAt).Seconds(), bound, aliveAt.Sub(restoreAt).Seconds(), backAt.Sub(restoreAt).Seconds())
	// The same slack as TestWatchPlainPeerFailover, for the shared VM.
	if d := deadAt.Sub(cutAt); d > bound+4*time.Second || d < (retries-1)*interval {
		t.Errorf("dead %v after the cut, want between %v and %v", d, (retries-1)*interval, bound+4*time.Second)
	}
	if d := aliveAt.Sub(restoreAt); d > 2*interval+4*time.Second {
		t.Errorf("alive %v after the restore, want within %v", d, 2*interval+4*time.Second)
	}
}

// forge sends, from the forger's namespace every period until the test
// ends, three GRE packets to r1 with r2's address as their source: a bare
// keepalive reply, a reply with a made-up nonce (a small sequence number,
// as the watcher's are, and a random tag), and a GRE packet carrying IPv4.
// It returns the count of packets sent.
func forge(t *testing.T, n *netns, period time.Duration) *int64 {
	t.Helper()
	var fd int
	_, err := inNetns(n.name, func() (string, error) {
		var err error
		// IPPROTO_RAW: we write the IPv4 header, source and all.
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return "", err
	})
	if err != nil {
		t.Fatalf("opening the forger's raw socket: %v", err)
	}
	packet := func(gre []byte) []byte {
		h := make([]byte, 20, 20+len(gre))
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(gre)))
		h[8], h[9] = 64, 47
		src, dst := kaSite2.As4(), kaSite1.As4()
		copy(h[12:], src[:])
		copy(h[16:], dst[:])
		return append(h, gre...) // the kernel writes the checksum
	}
	// An IPv4 packet from r2's tunnel address to r1's, protocol 253
	// (for experiments), as the tunnel's own traffic.
	inner := make([]byte, 20)
	inner[0], inner[8], inner[9] = 0x45, 64, 253
	binary.BigEndian.PutUint16(inner[2:], 20)
	copy(inner[12:], []byte{10, 0, 0, 2})
	copy(inner[16:], []byte{10, 0, 0, 1})
	binary.BigEndian.PutUint16(inner[10:], ipSum(inner))
	data := packet(append([]byte{0, 0, 0x08, 0}, inner...))
	bare := packet([]byte{0, 0, 0, 0})
	to := &unix.SockaddrInet4{Addr: kaSite1.As4()}
	var sent int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			var nonce [16]byte
			binary.BigEndian.PutUint64(nonce[:8], seq%16)
			unix.Getrandom(nonce[8:], 0)
			for _, p := range [][]byte{bare, packet(append([]byte{0, 0, 0, 0}, nonce[:]...)), data} {
				if err := unix.Sendto(fd, p, 0, to); err != nil {
					t.Errorf("forging: %v", err)
					return
				}
				atomic.AddInt64(&sent, 1)
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd)
	})
	return &sent
}

// ipSum is the Internet checksum of an IPv4 header whose checksum is 0.
func ipSum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
