package rtnl

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// inNewNetns runs f on a thread of its own in a network namespace of its
// own, which goes with the thread. It needs root (CAP_SYS_ADMIN), as the
// tests are run; without it the test fails rather than skips.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("a network namespace for the test: %v (run as root)", err)
			return
		}
		f()
	}()
	<-done
}

// openHere opens a Handle in the calling thread's namespace; nil, with the
// test failed, if it cannot.
func openHere(t *testing.T) *Handle {
	h, err := Open()
	if err != nil {
		t.Error(err)
	}
	return h
}

// A request that fails in the middle of a pipeline is answered with its
// own error, and the kernel still makes the requests after it: the caller
// learns exactly what was made.
func TestPipelineErrorInTheMiddle(t *testing.T) {
	inNewNetns(t, func() {
		c := &conn{fd: -1}
		defer c.close()
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Error(err)
			return
		}
		a := func(s string) Addr { return Addr{Prefix: netip.MustParsePrefix(s)} }
		idx := lo.Attrs().Index
		_, errs := c.pipeline(addrRequest(idx, a("10.9.0.1/32")), addrRequest(idx, a("10.9.0.1/32")),
			addrRequest(idx, a("10.9.0.2/32")), getLinkRequest("nosuchlink"))
		if len(errs) != 4 || errs[0] != nil || !errors.Is(errs[1], unix.EEXIST) || errs[2] != nil || !errors.Is(errs[3], unix.ENODEV) {
			t.Errorf("errors %v, want [nil EEXIST nil ENODEV]", errs)
		}
		as, err := netlink.AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Error(err)
			return
		}
		got := map[string]bool{}
		for _, x := range as {
			got[x.IPNet.String()] = true
		}
		if !got["10.9.0.1/32"] || !got["10.9.0.2/32"] {
			t.Errorf("addresses of lo after the pipeline: %v, want 10.9.0.1/32 and 10.9.0.2/32", got)
		}
		// The socket is still in step: a request after the pipeline
		// gets its own answer.
		answers, errs := c.pipeline(getLinkRequest("lo"))
		if errs[0] != nil || len(answers[0]) != 1 {
			t.Errorf("lo after the pipeline: %v, %d answers", errs, len(answers[0]))
		}
	})
}

// An IPv4 address gets the broadcast it is given, or, below /31, the
// prefix's last address; IPv6 has none.
func TestAddrRequestBroadcast(t *testing.T) {
	for _, tc := range []struct {
		addr Addr
		brd  string
	}{
		{Addr{Prefix: netip.MustParsePrefix("10.0.0.1/30")}, "10.0.0.3"},
		{Addr{Prefix: netip.MustParsePrefix("10.0.0.1/30"), Broadcast: netip.MustParseAddr("10.0.0.2")}, "10.0.0.2"},
		{Addr{Prefix: netip.MustParsePrefix("192.168.7.9/20")}, "192.168.15.255"},
		{Addr{Prefix: netip.MustParsePrefix("10.0.0.0/31")}, ""},
		{Addr{Prefix: netip.MustParsePrefix("fd00::1/64")}, ""},
	} {
		b := addrRequest(3, tc.addr).Serialize()[unix.SizeofNlMsghdr:]
		m := b[:unix.SizeofIfAddrmsg]
		if idx := u32(m[4:8]); idx != 3 || int(m[1]) != tc.addr.Prefix.Bits() {
			t.Errorf("%v: index %d, prefix length %d", tc.addr.Prefix, idx, m[1])
		}
		a := map[uint16][]byte{}
		for r := b[unix.SizeofIfAddrmsg:]; len(r) >= 4; {
			l := int(u16(r))
			a[u16(r[2:])] = r[4:l]
			r = r[(l+3)&^3:]
		}
		local, _ := netip.AddrFromSlice(a[unix.IFA_LOCAL])
		if local != tc.addr.Prefix.Addr() {
			t.Errorf("%v: IFA_LOCAL %v", tc.addr.Prefix, local)
		}
		brd := ""
		if v, ok := a[unix.IFA_BROADCAST]; ok {
			x, _ := netip.AddrFromSlice(v)
			brd = x.String()
		}
		if brd != tc.brd {
			t.Errorf("%v: broadcast %q, want %q", tc.addr.Prefix, brd, tc.brd)
		}
	}
}

// A dump that a concurrent change interrupts (NLM_F_DUMP_INTR) is read
// again on sockets with no dump left running: netlink's Execute returns at
// the first interrupted message and leaves the rest of the dump running on
// its socket, where every later dump was refused with EBUSY (a watcher
// that saw one interruption listed no links again).
func TestDumpsSurviveInterruptions(t *testing.T) {
	inNewNetns(t, func() {
		h := openHere(t)
		if h == nil {
			return
		}
		defer h.Close()
		other, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			t.Error(err)
			return
		}
		defer other.Close()
		// Enough links for a dump of several messages, and a GRE-less
		// kind every kernel has.
		for i := 0; i < 150; i++ {
			la := netlink.NewLinkAttrs()
			la.Name = fmt.Sprintf("v%da", i)
			if err := other.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: fmt.Sprintf("v%db", i)}); err != nil {
				t.Errorf("veth: %v", err)
				return
			}
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			la := netlink.NewLinkAttrs()
			la.Name = "churn"
			for {
				select {
				case <-stop:
					return
				default:
				}
				other.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "churnp"})
				other.LinkDel(&netlink.Veth{LinkAttrs: la})
			}
		}()
		var fails []error
		for i := 0; i < 300; i++ {
			if _, err := h.Links(); err != nil {
				fails = append(fails, err)
			}
			if _, err := h.Addrs(); err != nil {
				fails = append(fails, err)
			}
		}
		close(stop)
		<-done
		if len(fails) > 0 {
			t.Errorf("%d of 600 dumps failed under link churn, the first: %v", len(fails), fails[0])
		}
	})
}

// A link of the name that appeared after the snapshot is someone else's:
// AddLink's creation fails, and the alias that marks gre-hook's links must
// not land on that link (a later down would delete it as gre-hook's).
func TestAddLinkLeavesAnotherLinkOfTheName(t *testing.T) {
	inNewNetns(t, func() {
		h := openHere(t)
		if h == nil {
			return
		}
		defer h.Close()
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetName(lo, "gre-x")
		}
		if err != nil {
			t.Error(err)
			return
		}
		l := Link{Name: "gre-x", Kind: "gre", Alias: "gre-hook:eth1", MTU: 1476, GRE: true}
		if err := h.AddLink(l); !errors.Is(err, unix.EEXIST) {
			t.Errorf("AddLink over another link's name: %v, want EEXIST", err)
		}
		other, err := netlink.LinkByName("gre-x")
		if err != nil {
			t.Error(err)
			return
		}
		if a := other.Attrs().Alias; a != "" {
			t.Errorf("the other link has the alias %q now", a)
		}
	})
}

// When the socket loses answers (its receive buffer overflows with a
// pipeline's acknowledgements), the requests without one are Unanswered,
// not failed: the kernel handled every request of the write before it
// returned, and made them. The socket is closed, and the next request
// opens another, which is in step.
func TestLostAnswersAreUnanswered(t *testing.T) {
	inNewNetns(t, func() {
		c := &conn{fd: -1}
		defer c.close()
		if err := c.open(); err != nil {
			t.Error(err)
			return
		}
		// The smallest buffer the kernel allows: a few acknowledgements.
		if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1); err != nil {
			t.Error(err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Error(err)
			return
		}
		const n = pipelineMax
		reqs := make([]*nl.NetlinkRequest, n)
		for i := range reqs {
			reqs[i] = addrRequest(lo.Attrs().Index, Addr{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, 1, byte(i + 1)}), 32)})
		}
		_, errs := c.pipeline(reqs...)
		lost := 0
		for i, err := range errs {
			switch {
			case IsUnanswered(err):
				lost++
			case err != nil:
				t.Errorf("request %d: %v, want an answer or Unanswered", i, err)
			}
		}
		if lost == 0 {
			t.Errorf("no answer was lost with a receive buffer of the least size: the test proves nothing")
		}
		if c.fd != -1 {
			t.Error("the socket that lost answers is still open")
		}
		as, err := netlink.AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Error(err)
			return
		}
		if len(as) != n {
			t.Errorf("lo has %d addresses after the pipeline, want all %d (%d answers lost)", len(as), n, lost)
		}
		if answers, errs := c.pipeline(getLinkRequest("lo")); errs[0] != nil || len(answers[0]) != 1 {
			t.Errorf("lo after the lost answers: %v, %d answers", errs, len(answers[0]))
		}
	})
}
