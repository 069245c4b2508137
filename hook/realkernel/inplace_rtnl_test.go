//go:build realkernel

package realkernel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/gre"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
)

// TestRtnlSetTunnel changes every tunnel attribute of a live link of each
// GRE kind in place, through hook/rtnl, and reads back what the kernel
// reports: the new attributes, and the same index, MTU and fwmark. Then
// what the kernel refuses: another kind, a gre link's remote that would
// make it point-to-point or not, another tunnel's twin. SetEndpoints, the
// watcher's move, keeps the MTU too (an ip6gre changelink without it
// recomputes it from the route).
func TestRtnlSetTunnel(t *testing.T) {
	h, nh := inNewNetns(t)
	lo, _ := nh.LinkByName("lo")
	nh.LinkSetUp(lo)
	find := func(name string) rtnl.Link {
		t.Helper()
		ls, err := h.Links()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Name == name {
				return l
			}
		}
		t.Fatalf("%s is gone", name)
		return rtnl.Link{}
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		kind                  string
		local, remote, l2, r2 string
	}{
		{"gre", "192.0.2.1", "192.0.2.2", "192.0.2.11", "192.0.2.12"},
		{"gretap", "192.0.2.1", "192.0.2.3", "192.0.2.11", "192.0.2.13"},
		{"ip6gre", "2001:db8::1", "2001:db8::2", "2001:db8::11", "2001:db8::12"},
		{"ip6gretap", "2001:db8::1", "2001:db8::3", "2001:db8::11", "2001:db8::13"},
	} {
		// Not subtests: their goroutines would run ip in the test
		// binary's namespace, not on this locked thread's.
		func() {
			t.Logf("kind %s", tc.kind)
			name := "t-" + tc.kind
			v6 := tc.kind[:3] == "ip6"
			link := rtnl.Link{Params: gre.Params{TTL: 255, PMTUDisc: !v6, Local: a(tc.local), Remote: a(tc.remote)}, Name: name, Kind: tc.kind, Alias: plan.Alias("eth1"), MTU: 1300, GRE: true,
				FwMark: plan.DefaultPolicy.Mark}
			if err := h.AddLink(link); err != nil {
				t.Fatal(err)
			}
			before := find(name)
			to := before
			to.Local, to.Remote, to.TTL, to.IKey, to.OKey = a(tc.l2), a(tc.r2), 64, 7, 8
			if !v6 {
				// pmtudisc off needs ttl inherit.
				to.TOS, to.PMTUDisc, to.TTL = 0x10, false, 0
			}
			if err := h.SetTunnel(to); err != nil {
				t.Fatalf("SetTunnel: %v", err)
			}
			got := find(name)
			if got != to {
				t.Errorf("after SetTunnel the kernel reports\n%+v\nwant\n%+v", got, to)
			}
			// One key, then none: the key flags follow.
			to.IKey, to.OKey = 9, 9
			if err := h.SetTunnel(to); err != nil {
				t.Fatal(err)
			}
			assertEq(t, "keys", [2]uint32{find(name).IKey, find(name).OKey}, [2]uint32{9, 9})
			if err := h.SetTunnel(before); err != nil {
				t.Fatal(err)
			}
			if got := find(name); got != before {
				t.Errorf("after SetTunnel back the kernel reports\n%+v\nwant\n%+v", got, before)
			}
			if err := h.SetEndpoints(name, a(tc.l2), a(tc.r2)); err != nil {
				t.Fatal(err)
			}
			moved := before
			moved.Local, moved.Remote = a(tc.l2), a(tc.r2)
			if got := find(name); got != moved {
				t.Errorf("after SetEndpoints the kernel reports\n%+v\nwant\n%+v", got, moved)
			}

			other := rtnl.Link{Params: gre.Params{TTL: 255, PMTUDisc: !v6, Local: a(tc.local), Remote: a(tc.remote)}, Name: "o-" + tc.kind, Kind: tc.kind, Alias: plan.Alias("eth1"), MTU: 1300, GRE: true}
			if err := h.AddLink(other); err != nil {
				t.Fatal(err)
			}
			twin := moved
			twin.Local, twin.Remote = other.Local, other.Remote
			err := h.SetTunnel(twin)
			switch {
			case tc.kind == "ip6gretap":
				// ip6gre_changelink_common looks for a twin among the
				// ip6gre links only (ARPHRD_IP6GRE): an ip6gretap link
				// takes another's endpoints, though its creation would
				// be refused.
				t.Logf("SetTunnel of an ip6gretap link to another's endpoints: %v", err)
				if err == nil {
					h.SetTunnel(moved)
				}
			case !errors.Is(err, unix.EEXIST):
				t.Errorf("SetTunnel to another tunnel's endpoints: %v, want EEXIST", err)
			}
			kind := moved
			kind.Kind = map[string]string{"gre": "gretap", "gretap": "gre", "ip6gre": "ip6gretap", "ip6gretap": "ip6gre"}[tc.kind]
			if err := h.SetTunnel(kind); !errors.Is(err, unix.EOPNOTSUPP) {
				t.Errorf("SetTunnel to kind %s: %v, want EOPNOTSUPP", kind.Kind, err)
			}
			// No remote: a gre link would stop being point-to-point
			// (rtnl.RemoteChangeable), and the tap kinds refuse an
			// unspecified IFLA_GRE_REMOTE outright (ipgre_tap_validate,
			// ip6gre_tap_validate); only ip6gre takes it.
			none := moved
			none.Remote = a("0.0.0.0")
			if v6 {
				none.Remote = a("::")
			}
			err = h.SetTunnel(none)
			if tc.kind == "ip6gre" {
				if err != nil {
					t.Errorf("SetTunnel of an ip6gre link to no remote: %v", err)
				}
				h.SetTunnel(moved)
			} else if !errors.Is(err, unix.EINVAL) {
				t.Errorf("SetTunnel of a %s link to no remote: %v, want EINVAL", tc.kind, err)
			}
			assertEq(t, "RemoteChangeable to no remote", rtnl.RemoteChangeable(tc.kind, moved.Remote, none.Remote), tc.kind != "gre")
			if got := find(name); got != moved {
				t.Errorf("after the refusals the kernel reports\n%+v\nwant\n%+v", got, moved)
			}
			// And ip agrees on the keys (netlink's parser swaps a tap's).
			keyed := moved
			keyed.IKey, keyed.OKey = 7, 8
			if err := h.SetTunnel(keyed); err != nil {
				t.Fatal(err)
			}
			if out := mustRun(t, "ip", "-d", "link", "show", name); !strings.Contains(out, "ikey 0.0.0.7 okey 0.0.0.8") {
				t.Errorf("ip -d link after SetTunnel with ikey 7 okey 8:\n%s", out)
			}
		}()
	}
}
