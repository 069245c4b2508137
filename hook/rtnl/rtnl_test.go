package rtnl

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/gre"
)

// attrs parses the route attributes of a serialized RTM_*ROUTE request.
func attrs(t *testing.T, b []byte) (unix.RtMsg, map[uint16][]byte) {
	t.Helper()
	b = b[unix.SizeofNlMsghdr:]
	msg := unix.RtMsg{Family: b[0], Dst_len: b[1], Src_len: b[2], Tos: b[3], Table: b[4], Protocol: b[5], Scope: b[6], Type: b[7]}
	out := map[uint16][]byte{}
	b = b[unix.SizeofRtMsg:]
	for len(b) >= 4 {
		l := int(nl.NativeEndian().Uint16(b))
		typ := nl.NativeEndian().Uint16(b[2:])
		if l < 4 || l > len(b) {
			t.Fatalf("bad attribute length %d", l)
		}
		out[typ] = b[4:l]
		b = b[(l+3)&^3:]
	}
	return msg, out
}

func u32(b []byte) uint32 { return nl.NativeEndian().Uint32(b) }
func u16(b []byte) uint16 { return nl.NativeEndian().Uint16(b) }

// Tables and metrics are the kernel's uint32s all the way to the wire:
// values from 2^31 up must not be lost, as they were through an int on
// 32-bit targets.
func TestRouteRequestCarriesWideTableAndMetric(t *testing.T) {
	h := &Handle{names: map[int]string{7: "gre1"}, index: map[string]int{"gre1": 7}}
	r := Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Gw: netip.MustParseAddr("10.0.0.2"), Dev: "gre1", Table: 3000000000, Metric: 4000000000, Protocol: 176}
	req, err := h.routeRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, r)
	if err != nil {
		t.Fatal(err)
	}
	msg, a := attrs(t, req.Serialize())
	if msg.Family != unix.AF_INET || msg.Dst_len != 24 || msg.Protocol != 176 || msg.Type != unix.RTN_UNICAST || msg.Table != unix.RT_TABLE_UNSPEC {
		t.Errorf("rtmsg %+v", msg)
	}
	if got := u32(a[unix.RTA_TABLE]); got != 3000000000 {
		t.Errorf("RTA_TABLE %d", got)
	}
	if got := u32(a[unix.RTA_PRIORITY]); got != 4000000000 {
		t.Errorf("RTA_PRIORITY %d", got)
	}
	if got := u32(a[unix.RTA_OIF]); got != 7 {
		t.Errorf("RTA_OIF %d", got)
	}
	if got, _ := netip.AddrFromSlice(a[unix.RTA_GATEWAY]); got != r.Gw {
		t.Errorf("RTA_GATEWAY %s", got)
	}

	// Table 0 is main, carried in the header; metric 0 is left out; a
	// delete is scoped nowhere, as ip route del sends it.
	r = Route{Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fd00::1"), Protocol: 176}
	req, err = h.routeRequest(unix.RTM_DELROUTE, 0, r)
	if err != nil {
		t.Fatal(err)
	}
	msg, a = attrs(t, req.Serialize())
	if msg.Family != unix.AF_INET6 || msg.Table != unix.RT_TABLE_MAIN || msg.Scope != unix.RT_SCOPE_NOWHERE || msg.Dst_len != 0 {
		t.Errorf("rtmsg %+v", msg)
	}
	if _, ok := a[unix.RTA_TABLE]; ok {
		t.Error("RTA_TABLE sent for the main table")
	}
	if _, ok := a[unix.RTA_PRIORITY]; ok {
		t.Error("RTA_PRIORITY sent for metric 0")
	}
}

// uint32ToInt is v as netlink's int holds it on this build: the value on
// 64-bit builds, wrapped on 32-bit ones.
func uint32ToInt(v uint32) int { return int(v) }

func TestTableNumbers(t *testing.T) {
	for _, tc := range []struct {
		kernel int
		want   uint32
	}{
		{254, 0},
		{0, 0},
		{100, 100},
		{uint32ToInt(3000000000), 3000000000},
		// What netlink hands a 32-bit build for table 3000000000.
		{int(int32(-1294967296)), 3000000000},
	} {
		if got := FromKernelTable(tc.kernel); got != tc.want {
			t.Errorf("FromKernelTable(%d) = %d, want %d", tc.kernel, got, tc.want)
		}
	}
	if KernelTable(0) != unix.RT_TABLE_MAIN || KernelTable(7) != 7 {
		t.Error("KernelTable")
	}
}

// Routes read back name the main table 0 whichever way the kernel says
// it (254 in the header, or 0 with RTA_TABLE 254 read as 0), keep wide
// tables, and leave out what gre-hook does not deal in.
func TestFromNetlinkRoute(t *testing.T) {
	names := func(i int) string { return map[int]string{3: "eth1", 7: "gre1"}[i] }
	_, dst, _ := net.ParseCIDR("192.168.2.0/24")
	for _, tc := range []struct {
		name   string
		in     netlink.Route
		family int
		want   Route
		ok     bool
	}{
		{"main as 254", netlink.Route{Dst: dst, Gw: net.ParseIP("10.0.0.2"), LinkIndex: 7, Table: 254, Priority: 5, Protocol: 176, Type: unix.RTN_UNICAST}, 4,
			Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Gw: netip.MustParseAddr("10.0.0.2"), Dev: "gre1", Table: 0, Metric: 5, Index: 7, Protocol: 176, Type: unix.RTN_UNICAST}, true},
		{"main as 0", netlink.Route{Dst: dst, LinkIndex: 3, Table: 0, Protocol: 2, Type: unix.RTN_UNICAST}, 4,
			Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Dev: "eth1", Index: 3, Protocol: 2, Type: unix.RTN_UNICAST}, true},
		{"other table", netlink.Route{Dst: dst, LinkIndex: 3, Table: 100, Type: unix.RTN_UNICAST}, 4,
			Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Dev: "eth1", Table: 100, Index: 3, Type: unix.RTN_UNICAST}, true},
		{"wide table on a 32-bit build", netlink.Route{Dst: dst, LinkIndex: 3, Table: int(int32(-1294967296)), Priority: int(int32(-294967296)), Type: unix.RTN_UNICAST}, 4,
			Route{Dst: netip.MustParsePrefix("192.168.2.0/24"), Dev: "eth1", Table: 3000000000, Metric: 4000000000, Index: 3, Type: unix.RTN_UNICAST}, true},
		{"default v4", netlink.Route{Gw: net.ParseIP("198.51.100.254"), LinkIndex: 3, Table: 254, Type: unix.RTN_UNICAST}, 4,
			Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1", Index: 3, Type: unix.RTN_UNICAST}, true},
		{"default v6", netlink.Route{Gw: net.ParseIP("fd00::1"), LinkIndex: 3, Table: 254, Priority: 1024, Type: unix.RTN_UNICAST}, 6,
			Route{Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fd00::1"), Dev: "eth1", Metric: 1024, Index: 3, Type: unix.RTN_UNICAST}, true},
		{"local table", netlink.Route{Dst: dst, LinkIndex: 3, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_UNICAST}, 4, Route{}, false},
		{"blackhole", netlink.Route{Dst: dst, Table: 254, Type: unix.RTN_BLACKHOLE}, 4, Route{}, false},
	} {
		got, ok := fromNetlinkRoute(tc.in, tc.family, names)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// A link read back says its kind by the family of its endpoints (netlink
// calls ip6gre "gre" too), and what AddLink's request creates is what
// reads back, fwmark included, with IPv4 endpoints in four bytes.
func TestLinkConversions(t *testing.T) {
	for _, want := range []Link{
		{Params: gre.Params{Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"), TTL: 64, TOS: 1, PMTUDisc: true, IKey: 5, OKey: 6}, Name: "g4", Kind: "gre", MTU: 1476, Multicast: true, GRE: true, FwMark: 0x4747},
		{Params: gre.Params{Local: netip.MustParseAddr("::ffff:192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2")}, Name: "t4", Kind: "gretap", MTU: 1462, GRE: true},
		{Params: gre.Params{Local: netip.MustParseAddr("2001:db8::1"), Remote: netip.MustParseAddr("2001:db8::2"), TTL: 255}, Name: "g6", Kind: "ip6gre", MTU: 1448, GRE: true, FwMark: 7},
		{Params: gre.Params{Local: netip.MustParseAddr("2001:db8::1"), Remote: netip.MustParseAddr("2001:db8::2"), OKey: 9}, Name: "t6", Kind: "ip6gretap", MTU: 1434, GRE: true},
	} {
		b := createRequest(want).Serialize()
		if typ, flags := nl.NativeEndian().Uint16(b[4:]), nl.NativeEndian().Uint16(b[6:]); typ != unix.RTM_NEWLINK ||
			flags != unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK {
			t.Errorf("%s: message type %d, flags %#x", want.Name, typ, flags)
		}
		m := b[unix.SizeofNlMsghdr:]
		msg := nl.DeserializeIfInfomsg(m)
		got := Link{Multicast: msg.Flags&msg.Change&unix.IFF_MULTICAST != 0, GRE: true}
		top, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range top {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				got.Name = strings.TrimRight(string(a.Value), "\x00")
			case unix.IFLA_MTU:
				got.MTU = int(u32(a.Value))
			}
		}
		kind, data, err := linkInfo(m[unix.SizeofIfInfomsg:])
		if err != nil {
			t.Fatal(err)
		}
		got.Kind = kind
		flags := map[uint16]uint16{}
		for _, a := range data {
			switch a.Attr.Type {
			case greFwMark:
				got.FwMark = u32(a.Value)
			case nl.IFLA_GRE_LOCAL, nl.IFLA_GRE_REMOTE:
				if n := len(a.Value); (n == 4) != !strings.HasPrefix(kind, "ip6") {
					t.Errorf("%s: a %s endpoint in %d bytes", want.Name, kind, n)
				}
				ad, _ := netip.AddrFromSlice(a.Value)
				if a.Attr.Type == nl.IFLA_GRE_LOCAL {
					got.Local = ad
				} else {
					got.Remote = ad
				}
			case nl.IFLA_GRE_TTL:
				got.TTL = a.Value[0]
			case nl.IFLA_GRE_TOS:
				got.TOS = a.Value[0]
			case nl.IFLA_GRE_PMTUDISC:
				got.PMTUDisc = a.Value[0] == 1
			case nl.IFLA_GRE_IKEY:
				got.IKey = binary.BigEndian.Uint32(a.Value)
			case nl.IFLA_GRE_OKEY:
				got.OKey = binary.BigEndian.Uint32(a.Value)
			case nl.IFLA_GRE_IFLAGS, nl.IFLA_GRE_OFLAGS:
				flags[a.Attr.Type] = binary.BigEndian.Uint16(a.Value)
			}
		}
		// The key flag says the key is used: set with a key, clear without.
		if (flags[nl.IFLA_GRE_IFLAGS] == nl.GRE_KEY) != (want.IKey != 0) || (flags[nl.IFLA_GRE_OFLAGS] == nl.GRE_KEY) != (want.OKey != 0) {
			t.Errorf("%s: key flags %v", want.Name, flags)
		}
		if kind != want.Kind {
			t.Errorf("%s: kind %q, want %q", want.Name, kind, want.Kind)
		}
		want.Local, want.Remote = want.Local.Unmap(), want.Remote.Unmap()
		if got != want {
			t.Errorf("%s: round trip gives %+v, want %+v", want.Name, got, want)
		}
	}
	up := fromNetlink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: 3, Name: "eth1", MTU: 1500, Flags: net.FlagUp}})
	if want := (Link{Index: 3, Name: "eth1", Kind: "dummy", MTU: 1500, Up: true}); up != want {
		t.Errorf("dummy: %+v, want %+v", up, want)
	}
	for kind, mod := range map[string]string{"gre": "ip_gre", "gretap": "ip_gre", "ip6gre": "ip6_gre", "ip6gretap": "ip6_gre"} {
		if Module(kind) != mod {
			t.Errorf("Module(%s) = %s, want %s", kind, Module(kind), mod)
		}
	}
}
