//go:build realkernel

package realkernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/keepalive"
)

// The seed's underlay addresses: r1's eth1 and r2's eth1.
var (
	kaSite1 = netip.MustParseAddr("198.51.100.1")
	kaSite2 = netip.MustParseAddr("203.0.113.1")
)

// plainTwoSites is the two-site topology with both routers' underlays and
// tunnels made by hand with the seed's own ip commands: no gre-hook at all.
func plainTwoSites(t *testing.T) *twoSites {
	t.Helper()
	s := newTwoSites(t, "", "", false)
	for _, r := range []struct {
		ns       *netns
		addr, gw string
	}{{s.r1, "198.51.100.1/24", "198.51.100.254"}, {s.r2, "203.0.113.1/24", "203.0.113.254"}} {
		r.ns.ip("addr", "add", r.addr, "dev", "eth1")
		r.ns.ip("link", "set", "eth1", "up")
		r.ns.ip("route", "add", "default", "via", r.gw)
	}
	tunnelsByHand(s, "gre-site2", "gre-site1", "10.0.0")
	return s
}

// tunnelsByHand makes a tunnel between the sites as the seed did: r1's
// named t1, r2's t2, with the /30 net.0 between them; extra1 and extra2
// are more "ip tunnel add" arguments for each.
func tunnelsByHand(s *twoSites, t1, t2, net string, extra ...[]string) {
	for i, r := range []struct {
		ns                  *netns
		name, local, remote string
		address, broadcast  string
	}{
		{s.r1, t1, "198.51.100.1", "203.0.113.1", net + ".1/30", net + ".3"},
		{s.r2, t2, "203.0.113.1", "198.51.100.1", net + ".2/30", net + ".3"},
	} {
		args := []string{"tunnel", "add", r.name, "mode", "gre", "remote", r.remote, "local", r.local, "ttl", "255"}
		if i < len(extra) {
			args = append(args, extra[i]...)
		}
		r.ns.ip(args...)
		r.ns.ip("link", "set", r.name, "up", "multicast", "on")
		r.ns.ip("addr", "add", r.address, "broadcast", r.broadcast, "dev", r.name)
	}
}

func (n *netns) sysctl(key string) string {
	n.t.Helper()
	return strings.TrimSpace(n.exec("sysctl", "-n", key))
}

// reflectKeepalives makes router n bounce the keepalives that arrive on
// tunnel: accept packets from its own address there, no reverse-path filter
// there, and forwarding on. The effective rp_filter of an interface is the
// larger of conf.all's and its own, so a strict conf.all would still drop
// them: it is checked and, if set, cleared.
func reflectKeepalives(n *netns, tunnel string) {
	n.t.Helper()
	n.exec("sysctl", "-qw", "net.ipv4.conf."+tunnel+".accept_local=1")
	n.exec("sysctl", "-qw", "net.ipv4.conf."+tunnel+".rp_filter=0")
	n.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	if all := n.sysctl("net.ipv4.conf.all.rp_filter"); all != "0" {
		n.t.Logf("%s: net.ipv4.conf.all.rp_filter is %s, which overrides %s's 0; setting it to 0", n.name, all, tunnel)
		n.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	}
}

// kaOpen opens a keepalive socket inside n, closed when the test ends.
func kaOpen(t *testing.T, n *netns) *keepalive.Conn {
	t.Helper()
	var c *keepalive.Conn
	_, err := inNetns(n.name, func() (string, error) {
		var err error
		c, err = keepalive.Open()
		return "", err
	})
	if err != nil {
		t.Fatalf("opening a keepalive socket in %s: %v", n.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kaListen reads c until the test ends and passes on every GRE packet.
func kaListen(t *testing.T, c *keepalive.Conn) <-chan keepalive.Received {
	ch := make(chan keepalive.Received, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := c.Receive(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("receiving: %v", err)
				}
				return
			}
			select {
			case ch <- r:
			default:
				t.Errorf("more GRE packets than the test can keep")
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch
}

// drain forgets what ch holds: replies to keepalives of an earlier phase.
func drain(ch <-chan keepalive.Received) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// kaNonce is the nonce the tests' keepalives carry after their inner GRE
// header, as the watcher's do: a plain peer must bring it back.
var kaNonce = []byte("gre-hook nonce!!")

// isReply says whether r is the reply to a keepalive sent from local to
// remote.
func isReply(r keepalive.Received, local, remote netip.Addr) bool {
	return r.Src == remote && r.Dst == local && r.Reply()
}

// awaitReply sends a keepalive from local to remote every interval until a
// reply comes or within has passed. It returns the time from the last send
// to the reply.
func awaitReply(t *testing.T, c *keepalive.Conn, ch <-chan keepalive.Received, local, remote netip.Addr, interval, within time.Duration) (time.Duration, bool) {
	t.Helper()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	var sent time.Time
	send := func() {
		sent = time.Now()
		if err := c.SendNonce(local, remote, 0, 0, kaNonce); err != nil {
			t.Fatal(err)
		}
	}
	send()
	for {
		select {
		case r := <-ch:
			if isReply(r, local, remote) {
				if !r.HasNonce || !bytes.Equal(r.Nonce[:], kaNonce) {
					t.Errorf("the reply does not bring the nonce back: %+v", r)
				}
				return r.At.Sub(sent), true
			}
		case <-tick.C:
			send()
		case <-deadline.C:
			return 0, false
		}
	}
}

// capture runs tcpdump on dev in n, writing GRE packets to a pcap file,
// and returns once tcpdump says it is listening. stop waits up to 10s for
// the file to hold what enough says it needs, ends tcpdump and returns the
// packets' Ethernet frames.
func capture(t *testing.T, n *netns, dev string) (stop func(enough func([][]byte) bool) [][]byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), dev+".pcap")
	// -Z root: Debian's tcpdump otherwise drops to user tcpdump, who
	// may not write the test's directory. --immediate-mode and -U: a
	// packet goes to the file as it arrives, not when a buffer fills;
	// tcpdump loses what its buffer holds when it is stopped.
	cmd := exec.Command("ip", "netns", "exec", n.name, "tcpdump", "-n", "--immediate-mode", "-U", "-Z", "root", "-i", dev, "-w", file, "ip proto 47")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump: %v", err)
	}
	listening := make(chan bool, 1)
	var said bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "listening on") {
				listening <- true
			}
		}
		close(listening)
	}()
	select {
	case ok := <-listening:
		if !ok {
			cmd.Wait()
			t.Fatalf("tcpdump ended before listening:\n%s", said.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		for range listening { // until the reader has seen the end
		}
		cmd.Wait()
		t.Fatalf("tcpdump did not start listening in 30s:\n%s", said.String())
	}
	return func(enough func([][]byte) bool) [][]byte {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			b, _ := os.ReadFile(file)
			if frames, err := pcapFrames(b, true); err == nil && enough(frames) {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		frames, err := pcapFrames(b, false)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return frames
	}
}

// pcapFrames splits a classic pcap file of Ethernet frames into its
// frames. With partial, the file may still be being written: a record cut
// short ends it, and a header not yet there gives no frames.
func pcapFrames(b []byte, partial bool) ([][]byte, error) {
	if len(b) < 24 {
		if partial {
			return nil, nil
		}
		return nil, fmt.Errorf("%d bytes, shorter than a pcap file header", len(b))
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap file (magic % x)", b[:4])
	}
	if lt := order.Uint32(b[20:]); lt != 1 {
		return nil, fmt.Errorf("link type %d, want 1 (Ethernet)", lt)
	}
	var frames [][]byte
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			if partial {
				break
			}
			return nil, fmt.Errorf("record header cut short at byte %d", off)
		}
		n := int(order.Uint32(b[off+8:]))
		off += 16
		if n > len(b)-off {
			if partial {
				break
			}
			return nil, fmt.Errorf("record of %d bytes runs past the end", n)
		}
		frames = append(frames, b[off:off+n])
		off += n
	}
	return frames, nil
}

// wireIPv4 is an IPv4 header as read off the wire, for checking against
// the keepalive format with no help from the package under test.
type wireIPv4 struct {
	ttl, proto   byte
	total        int
	flags        uint16
	src, dst     netip.Addr
	checksumOK   bool
	payload, raw []byte
}

func parseWireIPv4(b []byte) (wireIPv4, error) {
	if len(b) < 20 || b[0] != 0x45 {
		return wireIPv4{}, fmt.Errorf("not an IPv4 header without options: % x", b)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total < 20 || total > len(b) {
		return wireIPv4{}, fmt.Errorf("IPv4 total length %d in %d bytes", total, len(b))
	}
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return wireIPv4{
		ttl: b[8], proto: b[9], total: total,
		flags:      binary.BigEndian.Uint16(b[6:]),
		src:        netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}),
		dst:        netip.AddrFrom4([4]byte{b[16], b[17], b[18], b[19]}),
		checksumOK: sum == 0xffff,
		payload:    b[20:total],
		raw:        b[:total],
	}, nil
}

// greOnWire returns the captured GRE packets from src to dst, less those
// that carry IPv6: the tunnels' own traffic, IPv6 autoconfiguration that the
// kernel starts as soon as a tunnel is up. It counts those.
func greOnWire(frames [][]byte, src, dst netip.Addr) (pkts []wireIPv4, ipv6 int) {
	for _, f := range frames {
		if len(f) < 14 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
			continue
		}
		ip, err := parseWireIPv4(f[14:])
		if err != nil || ip.src != src || ip.dst != dst || ip.proto != 47 {
			continue
		}
		if len(ip.payload) >= 4 && binary.BigEndian.Uint16(ip.payload[2:]) == 0x86dd {
			ipv6++
			continue
		}
		pkts = append(pkts, ip)
	}
	return pkts, ipv6
}

// checkKeepaliveOnWire checks the frames captured between the sites: every
// GRE packet from local to remote that is not tunnel traffic must be a
// keepalive in exactly the Cisco format with a nonce after the inner GRE
// header, every one back must be the reply to one of them (its inner
// packet, nonce and all, forwarded once by the peer), and there must be at
// least one of each.
func checkKeepaliveOnWire(t *testing.T, frames [][]byte, local, remote netip.Addr) {
	t.Helper()
	kas, ipv6Out := greOnWire(frames, local, remote)
	replies, ipv6Back := greOnWire(frames, remote, local)
	t.Logf("captured %d keepalives and %d replies, and %d and %d IPv6 packets of the tunnels' own", len(kas), len(replies), ipv6Out, ipv6Back)
	if len(kas) == 0 || len(replies) == 0 {
		t.Fatalf("captured %d frames: %d keepalives, %d replies", len(frames), len(kas), len(replies))
	}
	t.Logf("keepalive on the wire: % x", kas[0].raw)
	t.Logf("reply on the wire:     % x", replies[0].raw)

	var inner wireIPv4
	// masked holds each keepalive's inner packet with its TTL and checksum
	// zeroed, which the peer's forwarding changes.
	masked := map[string]bool{}
	mask := func(raw []byte) string {
		h := append([]byte(nil), raw...)
		h[8], h[10], h[11] = 0, 0, 0
		return string(h)
	}
	const nonceLen = 16
	for i, ka := range kas {
		if ka.proto != 47 || !ka.checksumOK || ka.total != 20+4+20+4+nonceLen {
			t.Errorf("keepalive %d: outer header: protocol %d, checksum ok %v, total length %d; want 47, true, 64", i, ka.proto, ka.checksumOK, ka.total)
			continue
		}
		if !bytes.Equal(ka.payload[:4], []byte{0, 0, 0x08, 0x00}) {
			t.Errorf("keepalive %d: outer GRE header % x, want 00 00 08 00 (no flags, version 0, IPv4)", i, ka.payload[:4])
		}
		in, err := parseWireIPv4(ka.payload[4:])
		if err != nil {
			t.Errorf("keepalive %d: inner header: %v", i, err)
			continue
		}
		if in.src != remote || in.dst != local || in.proto != 47 || in.ttl != 255 || !in.checksumOK || in.total != 24+nonceLen {
			t.Errorf("keepalive %d: inner header %s -> %s protocol %d TTL %d checksum ok %v length %d; want %s -> %s protocol 47 TTL 255, valid checksum, length 40",
				i, in.src, in.dst, in.proto, in.ttl, in.checksumOK, in.total, remote, local)
		}
		if len(in.payload) != 4+nonceLen || !bytes.Equal(in.payload[:4], []byte{0, 0, 0, 0}) {
			t.Errorf("keepalive %d: inner GRE header and payload % x, want 00 00 00 00 (no flags, protocol type 0) and a %d-byte nonce", i, in.payload, nonceLen)
		}
		inner = in
		masked[mask(in.raw)] = true
	}
	if inner.raw == nil {
		t.FailNow()
	}

	// A reply is the inner packet of one of the keepalives as the peer
	// forwarded it: one hop less of TTL, so another checksum, and
	// otherwise the same bytes, the nonce among them.
	for i, reply := range replies {
		if reply.ttl != inner.ttl-1 || !reply.checksumOK {
			t.Errorf("reply %d: TTL %d (checksum ok %v), want %d: the peer forwards the inner packet once", i, reply.ttl, reply.checksumOK, inner.ttl-1)
		}
		if !masked[mask(reply.raw)] {
			t.Errorf("reply %d is not the inner packet of a keepalive captured:\nreply % x\nlast inner % x", i, reply.raw, inner.raw)
		}
	}
}

// TestKeepaliveTwoSites runs keepalives between the seed's two sites, whose
// tunnels are made by hand with the seed's ip commands: the peer knows
// nothing of keepalives. The parts share one topology, one after the other;
// each sets up what it needs.
func TestKeepaliveTwoSites(t *testing.T) {
	t.Parallel()
	s := plainTwoSites(t)
	for _, part := range []struct {
		name string
		run  func(*testing.T, *twoSites)
	}{
		{"plain peer reflects", kaPlainPeer},
		{"no reply without reflection", kaNeedsReflection},
		{"both ends send", kaBothEnds},
		{"separate keys", kaKeyed},
		{"dead path", kaDeadPath},
	} {
		t.Run(part.name, func(t *testing.T) { part.run(t, s) })
	}
}

// kaPlainPeer sends keepalives from r1 to a peer that knows nothing of
// them: r2's tunnel made with the seed's ip commands, and the three settings
// a Linux router needs to reflect them. A reply must come, and the packets
// between the sites must be exactly Cisco's format.
func kaPlainPeer(t *testing.T, s *twoSites) {
	reflectKeepalives(s.r2, "gre-site1")
	stop := capture(t, s.inet, "to-r2")
	c := kaOpen(t, s.r1)
	ch := kaListen(t, c)
	rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second)
	frames := stop(func(frames [][]byte) bool {
		kas, _ := greOnWire(frames, kaSite1, kaSite2)
		replies, _ := greOnWire(frames, kaSite2, kaSite1)
		return len(kas) > 0 && len(replies) > 0
	})
	if !ok {
		t.Fatalf("no reply from %s in 20s; r2's gre-site1:\n%s", kaSite2, s.r2.ip("-s", "link", "show", "gre-site1"))
	}
	t.Logf("reply %v after the keepalive", rtt)
	checkKeepaliveOnWire(t, frames, kaSite1, kaSite2)
}

// kaNeedsReflection shows the test can fail, and what a Linux peer needs:
// without accept_local on its tunnel it drops the inner packet as a martian
// (its source is the peer's own address), and no reply comes though the
// keepalives arrive. The same goes for a strict reverse-path filter in
// conf.all, which overrides the tunnel's own 0. A loose one does not stop
// them, and with rp_filter 0 everywhere replies come.
func kaNeedsReflection(t *testing.T, s *twoSites) {
	const interval, intervals = time.Second, 3
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.gre-site1.rp_filter=0")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.accept_local=0")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.gre-site1.accept_local=0")
	c := kaOpen(t, s.r1)
	ch := kaListen(t, c)
	arrived := kaListen(t, kaOpen(t, s.r2))

	noReply := func(what string) {
		t.Helper()
		drain(ch)
		drain(arrived)
		if rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, interval, intervals*interval); ok {
			t.Errorf("%s: a reply came (%v after a keepalive)", what, rtt)
		}
		// The keepalives did reach r2: only the reflection failed.
		n := 0
		for len(arrived) > 0 {
			if r := <-arrived; r.Src == kaSite1 && r.Proto == keepalive.ProtoIPv4 {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no keepalive reached r2, so the test proves nothing", what)
		}
		t.Logf("%s: %d keepalives reached r2, no reply in %d intervals of %v", what, n, intervals, interval)
	}
	noReply("accept_local=0")

	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.gre-site1.accept_local=1")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
	noReply("accept_local=1, conf.all.rp_filter=1 (strict)")

	// Loose mode checks only that the source is reachable at all, and
	// with accept_local an address of the router's own is.
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2")
	drain(ch)
	if rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, interval, 20*time.Second); ok {
		t.Logf("accept_local=1, conf.all.rp_filter=2 (loose): reply %v after the keepalive", rtt)
	} else {
		t.Errorf("accept_local=1, conf.all.rp_filter=2 (loose): no reply in 20s")
	}

	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	drain(ch)
	rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, interval, 20*time.Second)
	if !ok {
		t.Fatal("accept_local=1, rp_filter 0: still no reply in 20s")
	}
	t.Logf("accept_local=1, rp_filter 0: reply %v after the keepalive", rtt)
}

// kaBothEnds runs keepalives from both routers at once. Each reflects the
// other's and sees its own replies. r1 reads every GRE packet and so also
// sees r2's keepalives; r2's socket filters in the kernel for replies with
// a nonce from r1 and must see nothing else.
func kaBothEnds(t *testing.T, s *twoSites) {
	reflectKeepalives(s.r1, "gre-site2")
	reflectKeepalives(s.r2, "gre-site1")
	c1, c2 := kaOpen(t, s.r1), kaOpen(t, s.r2)
	if err := c2.SetFilter([]netip.Addr{kaSite1}, true); err != nil {
		t.Fatal(err)
	}
	ch1, ch2 := kaListen(t, c1), kaListen(t, c2)

	var r1Reply, r1PeerKeepalive, r2Reply bool
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !(r1Reply && r1PeerKeepalive && r2Reply) {
		select {
		case <-tick.C:
			if err := c1.SendNonce(kaSite1, kaSite2, 0, 0, kaNonce); err != nil {
				t.Fatal(err)
			}
			if err := c2.SendNonce(kaSite2, kaSite1, 0, 0, kaNonce); err != nil {
				t.Fatal(err)
			}
		case r := <-ch1:
			if isReply(r, kaSite1, kaSite2) {
				r1Reply = true
			} else if r.Src == kaSite2 && r.Proto == keepalive.ProtoIPv4 {
				r1PeerKeepalive = true
			}
		case r := <-ch2:
			if !isReply(r, kaSite2, kaSite1) {
				t.Errorf("r2's filtered socket got something other than a reply from r1: %+v", r)
			}
			r2Reply = true
		case <-deadline:
			t.Fatalf("after 30s: r1 saw a reply %v and r2's keepalive %v; r2 saw a reply %v", r1Reply, r1PeerKeepalive, r2Reply)
		}
	}
}

// linkRxPackets is the kernel's count of packets received on a link.
func (n *netns) linkRxPackets(name string) uint64 {
	n.t.Helper()
	var ls []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	out := n.ip("-s", "-j", "link", "show", name)
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		n.t.Fatalf("parsing ip -s -j link show %s: %v\n%s", name, err, out)
	}
	return ls[0].Stats64.Rx.Packets
}

// kaKeyed runs keepalives over tunnels with separate keys. The outer header
// must carry r1's okey, which r2's tunnel takes as its ikey: with another
// key r2 has no tunnel for it and nothing comes back. The inner header
// carries r1's ikey, and so does the reply.
func kaKeyed(t *testing.T, s *twoSites) {
	const interval = 500 * time.Millisecond
	// A second pair of tunnels between the same addresses; the kernel
	// tells them from the first by their keys.
	tunnelsByHand(s, "gre-keyed", "gre-keyed", "10.0.1", []string{"ikey", "100", "okey", "200"}, []string{"ikey", "200", "okey", "100"})
	reflectKeepalives(s.r2, "gre-keyed")
	c := kaOpen(t, s.r1)
	ch := kaListen(t, c)

	// await sends keepalives with the given keys every interval and
	// returns the first reply, if one comes within.
	await := func(okey, ikey uint32, within time.Duration) (keepalive.Received, bool) {
		t.Helper()
		send := func() {
			if err := c.SendNonce(kaSite1, kaSite2, okey, ikey, kaNonce); err != nil {
				t.Fatal(err)
			}
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		deadline := time.NewTimer(within)
		defer deadline.Stop()
		drain(ch)
		send()
		for {
			select {
			case r := <-ch:
				if isReply(r, kaSite1, kaSite2) {
					return r, true
				}
			case <-tick.C:
				send()
			case <-deadline.C:
				return keepalive.Received{}, false
			}
		}
	}

	if r, ok := await(201, 100, 6*interval); ok {
		t.Errorf("a keepalive with output key 201, which r2 does not take, got a reply: %+v", r.Header)
	}
	before := s.r1.linkRxPackets("gre-keyed")
	r, ok := await(200, 100, 20*time.Second)
	if !ok {
		t.Fatal("no reply in 20s with output key 200, r2's input key")
	}
	if !r.HasKey || r.Key != 100 {
		t.Errorf("reply with key %d (present %v), want 100, r1's ikey", r.Key, r.HasKey)
	}
	if !r.HasNonce || !bytes.Equal(r.Nonce[:], kaNonce) {
		t.Errorf("the reply does not bring the nonce back: %+v", r)
	}
	// With its nonce the reply is long enough for Linux's GRE
	// demultiplexer, so gre-keyed, whose input key it carries, receives it
	// too, and drops it: nothing takes protocol type 0.
	t.Logf("gre-keyed received %d packets before the reply, %d after", before, s.r1.linkRxPackets("gre-keyed"))
}

// kaDeadPath measures how fast keepalives every second notice a cut path:
// the path is cut in the internet between the sites, and counts as dead
// once 3 intervals in a row pass without a reply. After the path is back, a
// reply must come within 2 intervals.
func kaDeadPath(t *testing.T, s *twoSites) {
	const interval, deadAfter = time.Second, 3
	reflectKeepalives(s.r2, "gre-site1")
	c := kaOpen(t, s.r1)
	ch := kaListen(t, c)
	if _, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second); !ok {
		t.Fatal("no reply in 20s before cutting the path")
	}

	var (
		cutAt, deadAt, restoreAt, backAt time.Time
		good, missed                     int
		replied                          bool
		rtts                             []time.Duration
		sent                             time.Time
	)
	send := func() {
		sent = time.Now()
		if err := c.Send(kaSite1, kaSite2, 0); err != nil {
			t.Fatal(err)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var restore <-chan time.Time
	deadline := time.After(60 * time.Second)
	drain(ch)
	send()
	for backAt.IsZero() {
		select {
		case r := <-ch:
			if !isReply(r, kaSite1, kaSite2) {
				continue
			}
			replied = true
			rtts = append(rtts, r.At.Sub(sent))
			if !restoreAt.IsZero() {
				backAt = r.At
			}
		case now := <-tick.C:
			// One interval has passed since the last send: was it
			// answered?
			if replied {
				good++
				missed = 0
			} else {
				missed++
			}
			replied = false
			switch {
			case cutAt.IsZero() && good >= 2:
				// Times are taken before the command: the
				// link changes somewhere during it, so the
				// figures are upper bounds.
				cutAt = time.Now()
				s.inet.ip("link", "set", "to-r2", "down")
			case !cutAt.IsZero() && deadAt.IsZero() && missed >= deadAfter:
				deadAt = now
				// Restore mid-interval, not just before a send.
				restore = time.After(interval / 2)
			}
			send()
		case <-restore:
			restore = nil
			restoreAt = time.Now()
			s.inet.ip("link", "set", "to-r2", "up")
		case <-deadline:
			t.Fatalf("after 60s: cut at %v, dead at %v, restored at %v, no reply since", cutAt, deadAt, restoreAt)
		}
	}
	detect, recovery := deadAt.Sub(cutAt), backAt.Sub(restoreAt)
	t.Logf("keepalive every %v, dead after %d silent intervals: detected %.2fs after the cut; first reply %.2fs after the path came back; round trips %v",
		interval, deadAfter, detect.Seconds(), recovery.Seconds(), rtts)
	// Generous bounds: the VM is slow and shared.
	if detect < (deadAfter-1)*interval || detect > 3*deadAfter*interval {
		t.Errorf("detection took %v, want between %v and %v", detect, (deadAfter-1)*interval, 3*deadAfter*interval)
	}
	if recovery > 2*interval {
		t.Errorf("first reply %v after the path came back, want within 2 intervals (%v)", recovery, 2*interval)
	}
}

// TestKeepaliveSocket checks the socket in one namespace over loopback: the
// outer source is the local address asked for, keys land where they
// belong, the kernel filter keeps exactly the peers' replies, an idle
// Receive sleeps instead of spinning, and a cancelled one returns. It runs
// alone (not parallel) so that the process's CPU time is its own.
func TestKeepaliveSocket(t *testing.T) {
	ns := newNS(t)
	var (
		lo1 = netip.MustParseAddr("127.0.0.1")
		lo2 = netip.MustParseAddr("127.0.0.2")
		lo3 = netip.MustParseAddr("127.0.0.3")
	)
	all, filtered := kaOpen(t, ns), kaOpen(t, ns)
	if err := filtered.SetFilter([]netip.Addr{lo3}, true); err != nil {
		t.Fatal(err)
	}
	recv := func(c *keepalive.Conn, within time.Duration) (keepalive.Received, error) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return c.Receive(ctx)
	}

	if err := all.SendKeys(lo2, lo1, 200, 100); err != nil {
		t.Fatal(err)
	}
	r, err := recv(all, 5*time.Second)
	if err != nil {
		t.Fatalf("the keepalive did not come back over loopback: %v", err)
	}
	if r.Src != lo2 || r.Dst != lo1 || r.Proto != keepalive.ProtoIPv4 || !r.HasKey || r.Key != 200 {
		t.Errorf("keepalive read as %s -> %s protocol %#04x key %d (%v); want %s -> %s, 0x0800, key 200", r.Src, r.Dst, r.Proto, r.Key, r.HasKey, lo2, lo1)
	}
	if want := keepalive.PacketKeys(lo2, lo1, 200, 100)[8:]; !bytes.Equal(r.Payload, want) {
		t.Errorf("payload % x, want % x", r.Payload, want)
	}
	if inner, err := keepalive.Parse(r.Payload); err != nil || inner.Src != lo1 || inner.Dst != lo2 || !inner.Reply() || inner.Key != 100 {
		t.Errorf("inner packet %+v, %v; want %s -> %s, a reply with key 100", inner, err, lo1, lo2)
	}

	// Replies, as a peer's kernel would forward them, from 127.0.0.2 (not
	// a peer) and 127.0.0.3 (the peer): a GRE header of type 0 and a
	// nonce; then a bare one from the peer, as a forger sends them.
	withNonce := append([]byte{0, 0, 0, 0}, kaNonce...)
	sends := []struct {
		src     netip.Addr
		payload []byte
	}{{lo2, withNonce}, {lo3, withNonce}, {lo3, []byte{0, 0, 0, 0}}}
	_, err = inNetns(ns.name, func() (string, error) {
		for _, sd := range sends {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_GRE)
			if err != nil {
				return "", err
			}
			err = unix.Bind(fd, &unix.SockaddrInet4{Addr: sd.src.As4()})
			if err == nil {
				err = unix.Sendto(fd, sd.payload, 0, &unix.SockaddrInet4{Addr: lo1.As4()})
			}
			unix.Close(fd)
			if err != nil {
				return "", fmt.Errorf("sending a reply from %s: %w", sd.src, err)
			}
		}
		return "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sd := range sends {
		r, err := recv(all, 5*time.Second)
		if err != nil || r.Src != sd.src || !r.Reply() || r.HasNonce != (len(sd.payload) > 4) {
			t.Errorf("unfiltered socket: got %+v, %v; want a reply from %s with nonce %v", r, err, sd.src, len(sd.payload) > 4)
		}
	}
	if r, err := recv(filtered, 5*time.Second); err != nil || r.Src != lo3 || !r.Reply() || !r.HasNonce || !bytes.Equal(r.Nonce[:], kaNonce) {
		t.Errorf("filtered socket: got %+v, %v; want the reply from %s with its nonce", r, err, lo3)
	}

	// Nothing else may reach the filtered socket, not the bare reply, and
	// waiting for it must sleep in the kernel.
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	r, err = recv(filtered, 2*time.Second)
	waited := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("filtered socket: got %+v, %v; want nothing until the deadline", r.Header, err)
	}
	if waited < 1900*time.Millisecond {
		t.Errorf("Receive returned after %v, before its 2s deadline", waited)
	}
	t.Logf("an idle Receive of %v used %v of CPU", waited.Round(time.Millisecond), cpu)
	if cpu > waited/4 {
		t.Errorf("an idle Receive of %v used %v of CPU: it spins", waited, cpu)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	if _, err := filtered.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Receive: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled Receive took %v to return", d)
	}

	// The kernel refuses a source that is not one of ours.
	if err := all.Send(netip.MustParseAddr("192.0.2.1"), lo1, 0); err == nil || !strings.Contains(err.Error(), "from 192.0.2.1 to 127.0.0.1") {
		t.Errorf("sending from an address the host does not have: %v", err)
	}
}
