//go:build realkernel

package realkernel

import (
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/gre"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// inNewNetns moves the test's goroutine, on a thread of its own, into a
// new network namespace, and opens gre-hook's handle and a plain netlink
// handle there. The thread stays locked: when the test's goroutine ends, Go
// discards the thread, and the namespace goes with it.
func inNewNetns(t *testing.T) (*rtnl.Handle, *netlink.Handle) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	h, err := rtnl.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	return h, nh
}

// kernelLinks is every link name the kernel lists, with its device group.
func kernelLinks(t *testing.T, nh *netlink.Handle) map[string]uint32 {
	t.Helper()
	ls, err := nh.LinkList()
	if err != nil {
		t.Fatalf("listing links: %v", err)
	}
	out := map[string]uint32{}
	for _, l := range ls {
		out[l.Attrs().Name] = l.Attrs().Group
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// names lists m's names, sorted, less those in without.
func names(m map[string]uint32, without ...string) string {
	var s []string
	for n := range m {
		if !contains(without, n) {
			s = append(s, n)
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// TestDelLinksInOneBatch checks the batch teardown against the kernel: the
// links asked for go, in one device group, and nothing else does, even a
// link that happens to be in the group chosen.
func TestDelLinksInOneBatch(t *testing.T) {
	h, nh := inNewNetns(t)
	gre := func(name string, i int) {
		l := rtnl.Link{Params: gre.Params{Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})},
			Name: name, Kind: "gre", Multicast: true, Alias: plan.Alias("eth1"),
		}
		if err := h.AddLink(l); err != nil {
			t.Fatalf("adding %s: %v", name, err)
		}
	}
	for i, n := range []string{"t1", "t2", "t3", "t4", "t5"} {
		gre(n, i+1)
	}
	const taken = 0x80001234
	for n, g := range map[string]uint32{"keep0": 0, "keepg": taken} {
		d := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: n, Group: g}}
		if err := nh.LinkAdd(d); err != nil {
			t.Fatalf("adding dummy %s: %v", n, err)
		}
		if g != 0 {
			if err := nh.LinkSetGroup(d, int(g)); err != nil {
				t.Fatalf("setting group of %s: %v", n, err)
			}
		}
	}
	if got := kernelLinks(t, nh)["keepg"]; got != taken {
		t.Fatalf("keepg is in group %#x, want %#x", got, taken)
	}

	// The module adds its fallback devices (gre0 and the like) to
	// every namespace; they must survive too.
	base := kernelLinks(t, nh)
	all := names(base)
	if _, ok := base["gre0"]; !ok {
		t.Fatalf("links %q: want ip_gre's fallback gre0 among them", all)
	}

	// A group that already holds a foreign link is refused, and
	// nothing is deleted.
	err := h.DelGroup([]string{"t1", "t2"}, taken)
	if err == nil || !strings.Contains(err.Error(), "keepg") {
		t.Fatalf("DelGroup into a group holding keepg: got %v, want an error naming keepg", err)
	}
	assertEq(t, "links after a refused DelGroup", names(kernelLinks(t, nh)), all)

	// DelLinks deletes the named links through a fresh group, and
	// only them. The kernel's RTM_DELLINK for each says which group
	// the link was in when it went: nonzero proves the batch path.
	updates := make(chan netlink.LinkUpdate, 64)
	stop := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, stop); err != nil {
		t.Fatalf("subscribing to link updates: %v", err)
	}
	errs := h.DelLinks([]string{"t1", "t2", "t3", "gone"})
	for i, err := range errs {
		if err != nil {
			t.Errorf("DelLinks: entry %d: %v", i, err)
		}
	}
	left := kernelLinks(t, nh)
	assertEq(t, "links after DelLinks", names(left), names(base, "t1", "t2", "t3"))
	assertEq(t, "keepg's group after DelLinks", left["keepg"], uint32(taken))
	assertEq(t, "t4's group after DelLinks", left["t4"], uint32(0))
	deleted := map[string]uint32{}
	timeout := time.After(10 * time.Second)
wait:
	for len(deleted) < 3 {
		select {
		case u := <-updates:
			if u.Header.Type == unix.RTM_DELLINK {
				deleted[u.Attrs().Name] = u.Attrs().Group
			}
		case <-timeout:
			break wait
		}
	}
	close(stop)
	assertEq(t, "links the kernel reported deleted", names(deleted), "t1 t2 t3")
	g := deleted["t1"]
	if g == 0 || g == taken || deleted["t2"] != g || deleted["t3"] != g {
		t.Errorf("deleted links' groups %v: want one fresh nonzero group for all", deleted)
	}

	// A single link is deleted on its own.
	if errs := h.DelLinks([]string{"t4"}); errs[0] != nil {
		t.Errorf("DelLinks(t4): %v", errs[0])
	}
	assertEq(t, "links after deleting t4", names(kernelLinks(t, nh)), names(base, "t1", "t2", "t3", "t4"))
}

// TestRtnlFwMarkAndRules drives hook/rtnl's fwmark and rules directly:
// IFLA_GRE_FWMARK, which netlink's Gretun cannot carry, is set at creation
// and in place and read back (and the kernel agrees, through ip -d link
// in the same namespace); gre-hook's rules go in with protocol 176, come
// back as added, and are deleted by that protocol without touching a rule
// of the same shape that another owner made.
func TestRtnlFwMarkAndRules(t *testing.T) {
	h, nh := inNewNetns(t)
	lo, _ := nh.LinkByName("lo")
	nh.LinkSetUp(lo)
	// An MTU other than the one the kernel derives (1476): a change of the
	// fwmark must keep it.
	link := rtnl.Link{Params: gre.Params{TTL: 64, PMTUDisc: true, Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2")}, Name: "gre-m", Kind: "gre", Alias: plan.Alias("eth1"), MTU: 1400, GRE: true,
		FwMark: plan.DefaultPolicy.Mark}
	if err := h.AddLink(link); err != nil {
		t.Fatal(err)
	}
	mark := func() uint32 {
		ls, err := h.Links()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Name == "gre-m" {
				if l.TTL != 64 || !l.PMTUDisc || l.Remote != link.Remote || l.MTU != 1400 {
					t.Errorf("the fwmark change lost other attributes: %+v", l)
				}
				return l.FwMark
			}
		}
		t.Fatal("gre-m is gone")
		return 0
	}
	if m := mark(); m != 0x4747 {
		t.Errorf("fwmark after AddLink: %#x", m)
	}
	if err := h.SetFwMark("gre-m", 0x99); err != nil {
		t.Fatal(err)
	}
	if m := mark(); m != 0x99 {
		t.Errorf("fwmark after SetFwMark: %#x", m)
	}

	ours := []rtnl.Rule{}
	for _, r := range plan.DefaultPolicy.Rules(4) {
		ours = append(ours, rtnl.Rule{Family: 4, Priority: r.Priority, Table: r.Table, Mark: r.Mark, Invert: r.Invert, SuppressPrefixLen: r.SuppressPrefixLen, Protocol: plan.RouteProtocol})
	}
	// The admin's rule of the same shape, with another protocol.
	theirs := ours[1]
	theirs.Protocol = unix.RTPROT_STATIC
	for _, r := range append(ours, theirs) {
		if err := h.AddRule(r); err != nil {
			t.Fatalf("adding %+v: %v", r, err)
		}
	}
	list := func() []rtnl.Rule {
		rs, err := h.Rules(4)
		if err != nil {
			t.Fatal(err)
		}
		var out []rtnl.Rule
		for _, r := range rs {
			if r.Priority == 32700 || r.Priority == 32701 {
				out = append(out, r)
			}
		}
		return out
	}
	got := list()
	if len(got) != 3 {
		t.Fatalf("rules: %+v", got)
	}
	for _, want := range append(ours, theirs) {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("rule %+v not read back as added: %+v", want, got)
		}
	}
	for _, r := range ours {
		if err := h.DelRule(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(); len(got) != 1 || got[0] != theirs {
		t.Errorf("after deleting gre-hook's rules: %+v, want only the admin's", got)
	}
}
