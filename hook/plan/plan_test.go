package plan

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/gre"
)

var eth1 = Underlay{Name: "eth1", MTU: 1500, Up: true, Addrs: []netip.Addr{
	netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:1::1"),
}}

func load(t *testing.T, path string) []config.Tunnel {
	t.Helper()
	cfg, err := config.Load([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Tunnels
}

func parse(t *testing.T, text string) []config.Tunnel {
	t.Helper()
	ts, errs := config.Parse("t.toml", []byte(text))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ts
}

func TestUpSite1(t *testing.T) {
	got, err := Up(load(t, "../../configs/site1.toml"), eth1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Tunnel{{
		Link: Link{Params: gre.Params{Local: netip.MustParseAddr("198.51.100.1"), Remote: netip.MustParseAddr("203.0.113.1"), TTL: 255, PMTUDisc: true}, Name: "gre-site2", Mode: config.ModeGRE,
			MTU: 1476, Multicast: true, Alias: "gre-hook:eth1"},
		Addrs:  []Addr{{Prefix: netip.MustParsePrefix("10.0.0.1/30"), Broadcast: netip.MustParseAddr("10.0.0.3")}},
		Routes: []Route{{Dst: netip.MustParsePrefix("192.168.2.0/24"), Gw: netip.MustParseAddr("10.0.0.2"), Dev: "gre-site2"}},
		MSS:    []MSSRule{{Family: 4, Out: "gre-site2", Comment: "gre-hook:eth1:gre-site2", Mode: config.MSSPMTU}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	var cmds []string
	l := got[0].Link
	cmds = append(cmds, AddLinkCmd(l), AliasCmd(l), MulticastCmd(l), MTUCmd(l), AddAddrCmd(l.Name, got[0].Addrs[0]), UpCmd(l.Name),
		ReplaceRouteCmd(got[0].Routes[0]), strings.Join(RuleSpec(got[0].MSS[0]), " "))
	wantCmds := `ip tunnel add gre-site2 mode gre remote 203.0.113.1 local 198.51.100.1 ttl 255
ip link set gre-site2 alias gre-hook:eth1
ip link set gre-site2 multicast on
ip link set gre-site2 mtu 1476
ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre-site2
ip link set gre-site2 up
ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176
-o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu`
	if g := strings.Join(cmds, "\n"); g != wantCmds {
		t.Errorf("commands:\n%s\nwant:\n%s", g, wantCmds)
	}
}

func TestMTU(t *testing.T) {
	for _, tc := range []struct {
		mode   config.Mode
		remote string
		keys   string
		mtu    int
	}{
		{config.ModeGRE, "203.0.113.1", "", 1476},
		{config.ModeGRETap, "203.0.113.1", "", 1462},
		{config.ModeIP6GRE, "2001:db8::2", "", 1448},
		{config.ModeIP6GRETap, "2001:db8::2", "", 1434},
		{config.ModeGRE, "203.0.113.1", "key = 1\n", 1472},
		{config.ModeGRETap, "203.0.113.1", "key = 1\n", 1458},
		{config.ModeIP6GRE, "2001:db8::2", "key = 1\n", 1444},
		{config.ModeIP6GRETap, "2001:db8::2", "key = 1\n", 1430},
		// Only the output key lengthens what gre-hook sends.
		{config.ModeGRE, "203.0.113.1", "ikey = 1\n", 1476},
		{config.ModeGRE, "203.0.113.1", "okey = 1\n", 1472},
	} {
		ts := parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nmode = \""+string(tc.mode)+"\"\nremote = \""+tc.remote+"\"\n"+tc.keys)
		got, err := Up(ts, eth1, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Link.MTU != tc.mtu {
			t.Errorf("%s %q: mtu %d, want %d", tc.mode, tc.keys, got[0].Link.MTU, tc.mtu)
		}
	}
	// Underlay jumbo frames, and an explicit mtu.
	ts := parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n")
	j := eth1
	j.MTU = 9000
	if got, _ := Up(ts, j, Options{}); got[0].Link.MTU != 8976 {
		t.Errorf("jumbo: mtu %d", got[0].Link.MTU)
	}
	ts = parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\nmtu = 1400\n")
	if got, _ := Up(ts, eth1, Options{}); got[0].Link.MTU != 1400 {
		t.Errorf("explicit: mtu %d", got[0].Link.MTU)
	}
	z := eth1
	z.MTU = 0
	if _, err := Up(parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\n"), z, Options{}); err == nil {
		t.Error("no error without an underlay mtu")
	}
}

func TestLocalAuto(t *testing.T) {
	v4 := parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\nlocal = \"auto\"\n")
	v6 := parse(t, "[[tunnel]]\nname = \"t\"\nunderlay = \"eth1\"\nmode = \"ip6gre\"\nremote = \"2001:db8::2\"\n")
	if got, err := Up(v4, eth1, Options{}); err != nil || got[0].Link.Local != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("v4 auto: %v %v", got, err)
	}
	if got, err := Up(v6, eth1, Options{}); err != nil || got[0].Link.Local != netip.MustParseAddr("2001:db8:1::1") {
		t.Errorf("v6 auto: %v %v", got, err)
	}
	only4 := Underlay{Name: "eth1", MTU: 1500, Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}
	_, err := Up(v6, only4, Options{})
	if want := `tunnel "t": local is automatic but underlay eth1 has no global IPv6 address yet`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = Up(v4, Underlay{Name: "eth1", MTU: 1500}, Options{})
	if want := `tunnel "t": local is automatic but underlay eth1 has no global IPv4 address yet`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// The underlay's address is the remote itself: a tunnel to itself.
	self := Underlay{Name: "eth1", MTU: 1500, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}
	_, err = Up(v4, self, Options{})
	if want := `tunnel "t": local is automatic, and underlay eth1's only IPv4 address 203.0.113.1 is the remote itself`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// With another address to choose, that one is the local.
	self.Addrs = append(self.Addrs, netip.MustParseAddr("198.51.100.1"))
	if got, err := Up(v4, self, Options{}); err != nil || got[0].Link.Local != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("auto beside the remote: %v %v", got, err)
	}
}

func TestDefaultRoute(t *testing.T) {
	ts := parse(t, `[[tunnel]]
name = "vpn"
underlay = "eth1"
remote = "203.0.113.5"
address = ["10.9.0.2/30", "fd09::/127"]
default_route = true
`)
	o := Options{Policy: DefaultPolicy, Metrics: map[string]uint32{"vpn": 3}}
	got, err := Up(ts, eth1, o)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	cmds = append(cmds, FwMarkCmd(got[0].Link))
	for _, d := range got[0].Defaults {
		cmds = append(cmds, ReplaceRouteCmd(d))
	}
	for _, f := range []int{4, 6} {
		for _, r := range DefaultPolicy.Rules(f) {
			cmds = append(cmds, AddRuleCmd(r))
		}
	}
	cmds = append(cmds, DelRuleCmd(DefaultPolicy.Rules(4)[1]))
	// The main table's default is not touched, and there is no pin.
	want := `ip link set vpn type gre fwmark 0x4747
ip route replace default via 10.9.0.1 dev vpn table 18247 metric 3 proto 176
ip -6 route replace default via fd09::1 dev vpn table 18247 metric 3 proto 176
ip rule add priority 32700 lookup main suppress_prefixlength 0 proto 176
ip rule add priority 32701 not fwmark 0x4747 lookup 18247 proto 176
ip -6 rule add priority 32700 lookup main suppress_prefixlength 0 proto 176
ip -6 rule add priority 32701 not fwmark 0x4747 lookup 18247 proto 176
ip rule del priority 32701 not fwmark 0x4747 lookup 18247 proto 176`
	if g := strings.Join(cmds, "\n"); g != want {
		t.Errorf("got:\n%s\nwant:\n%s", g, want)
	}
	// Without a metric, the first.
	got, err = Up(ts, eth1, Options{Policy: DefaultPolicy})
	if err != nil || got[0].Defaults[0].Metric != 1 {
		t.Errorf("without a metric: %+v, %v", got, err)
	}
}

func TestCommands(t *testing.T) {
	l := Link{Params: gre.Params{Local: netip.MustParseAddr("198.51.100.1"), Remote: netip.MustParseAddr("203.0.113.1"), TTL: 0, TOS: 1, IKey: 7, OKey: 8}, Name: "t", Mode: config.ModeGRETap,
		MTU: 1400, Alias: "gre-hook:eth1"}
	r6 := Route{Dst: netip.MustParsePrefix("fd10::/48"), Gw: netip.MustParseAddr("fd00::1"), Dev: "t", Table: 100, Metric: 5}
	for _, tc := range []struct{ got, want string }{
		{AddLinkCmd(l), "ip link add t type gretap remote 203.0.113.1 local 198.51.100.1 ttl 0 tos inherit ikey 7 okey 8 nopmtudisc"},
		{AddLinkCmd(Link{Params: gre.Params{Local: netip.MustParseAddr("2001:db8::1"), Remote: netip.MustParseAddr("2001:db8::2"), TTL: 64, TOS: 0x10, IKey: 9, OKey: 9, PMTUDisc: true}, Name: "t6", Mode: config.ModeIP6GRE}),
			"ip -6 tunnel add t6 mode ip6gre remote 2001:db8::2 local 2001:db8::1 ttl 64 tos 0x10 key 9"},
		{AddLinkCmd(Link{Params: gre.Params{Local: netip.MustParseAddr("2001:db8::1"), Remote: netip.MustParseAddr("2001:db8::2"), TTL: 255, PMTUDisc: true}, Name: "t6", Mode: config.ModeIP6GRETap}),
			"ip link add t6 type ip6gretap remote 2001:db8::2 local 2001:db8::1 ttl 255"},
		{MulticastCmd(l), "ip link set t multicast off"},
		{MTUCmd(l), "ip link set t mtu 1400"},
		{AliasCmd(l), "ip link set t alias gre-hook:eth1"},
		{DownCmd("t"), "ip link set t down"},
		{DelLinkCmd("t"), "ip link del t"},
		{AddAddrCmd("t", Addr{Prefix: netip.MustParsePrefix("fd00::/127")}), "ip addr add fd00::/127 dev t"},
		{DelAddrCmd("t", Addr{Prefix: netip.MustParsePrefix("10.0.0.1/30"), Broadcast: netip.MustParseAddr("10.0.0.3")}), "ip addr del 10.0.0.1/30 dev t"},
		{ReplaceRouteCmd(r6), "ip -6 route replace fd10::/48 via fd00::1 dev t table 100 metric 5 proto 176"},
		{DelRouteCmd(r6), "ip -6 route del fd10::/48 via fd00::1 dev t table 100 metric 5"},
		{RestoreRouteCmd(Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.51.100.254"), Dev: "eth1", Metric: 100}, 16),
			"ip route replace default via 198.51.100.254 dev eth1 metric 100 proto 16"},
		{RestoreRouteCmd(Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "ppp0"}, 0), "ip route replace default dev ppp0"},
		{strings.Join(RuleSpec(MSSRule{Family: 6, Out: "t", Comment: "gre-hook:eth1:t", Mode: config.MSSFixed, Value: 1400}), " "),
			"-o t -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:t -j TCPMSS --set-mss 1400"},
		{IptablesCmd(4) + " " + IptablesCmd(6), "iptables ip6tables"},
		{Comment("eth1", "t"), "gre-hook:eth1:t"},
		// In place: only what differs, in ip's words; the ip6 modes have
		// no pmtudisc to compare.
		{ChangeTunnelCmd(l, Changes(l, withKeys(l, 7, 7))), "ip link set t type gretap key 7"},
		{ChangeTunnelCmd(l, Changes(l, withKeys(l, 0, 0))) + " # " + Was(Changes(l, withKeys(l, 0, 0))), "ip link set t type gretap nokey # ikey 7 okey 8"},
		{ChangeTunnelCmd(l, Changes(l, withKeys(l, 0, 8))), "ip link set t type gretap noikey okey 8"},
		{ChangeTunnelCmd(l, Changes(l, Link{Params: gre.Params{Local: l.Local, Remote: netip.MustParseAddr("203.0.113.9"), TTL: 64, PMTUDisc: true, IKey: 7, OKey: 8}, Name: "t", Mode: l.Mode})),
			"ip link set t type gretap remote 203.0.113.9 ttl 64 tos 0x0 pmtudisc"},
		{fmt.Sprint(len(Changes(Link{Params: gre.Params{PMTUDisc: true}, Mode: config.ModeIP6GRE}, Link{Mode: config.ModeIP6GRE}))), "0"},
		{Changes(l, withKeys(l, 0, 8))[0].Why() + "; " + Changes(l, Link{Params: gre.Params{TTL: 3, TOS: 1, IKey: 7, OKey: 8, Local: l.Local, Remote: l.Remote}, Mode: l.Mode})[0].Why(),
			"key: have ikey 7 okey 8, want noikey okey 8; ttl is 0, want 3"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

func withKeys(l Link, ikey, okey uint32) Link {
	l.IKey, l.OKey = ikey, okey
	return l
}

func TestMSSFamilies(t *testing.T) {
	ts := parse(t, `[[tunnel]]
name = "a"
underlay = "eth1"
remote = "203.0.113.1"
address = ["fd00::1/127"]

[[tunnel]]
name = "b"
underlay = "eth1"
remote = "203.0.113.2"
mss = "off"
`)
	got, err := Up(ts, eth1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0].MSS) != 2 || got[0].MSS[0].Family != 4 || got[0].MSS[1].Family != 6 {
		t.Errorf("IPv6-carrying tunnel: %+v", got[0].MSS)
	}
	if len(got[1].MSS) != 0 {
		t.Errorf("mss off: %+v", got[1].MSS)
	}
	// An IPv6 route's metric is the one the kernel stores.
	if r := got[0].Addrs; len(r) != 1 || r[0].Broadcast.IsValid() {
		t.Errorf("IPv6 address with a broadcast: %+v", r)
	}
}
