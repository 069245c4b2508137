package engine

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/gre"
	"github.com/gre-hook/gre-hook/hook/mss"
	"github.com/gre-hook/gre-hook/hook/plan"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// The diff alone: (want, kernel snapshot, record) -> the commands of its
// steps. No kernel, fake or real, is involved.

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// wantGRE is one tunnel on eth1 as plan.Up makes it: an address, a
// route through the peer, an MSS rule.
func wantGRE() plan.Tunnel {
	return plan.Tunnel{
		Link: plan.Link{Params: gre.Params{Local: addr("198.51.100.1"), Remote: addr("203.0.113.2"), TTL: 64, PMTUDisc: true}, Name: "gre1", Mode: config.ModeGRE,
			MTU: 1476, Multicast: true, Alias: plan.Alias("eth1")},
		Addrs:  []plan.Addr{{Prefix: pfx("10.0.0.1/30"), Broadcast: addr("10.0.0.3")}},
		Routes: []plan.Route{{Dst: pfx("192.168.2.0/24"), Gw: addr("10.0.0.2"), Dev: "gre1"}},
		MSS:    []plan.MSSRule{{Family: 4, Out: "gre1", Comment: plan.Comment("eth1", "gre1"), Mode: config.MSSPMTU}},
	}
}

// kernelWith is the kernel holding w exactly as up leaves it, changed by
// edits.
func kernelWith(w plan.Tunnel, edits ...func(*Snapshot)) *Snapshot {
	s := &Snapshot{
		Links: map[string]rtnl.Link{
			"eth1": {Index: 2, Name: "eth1", MTU: 1500, Up: true},
			"gre1": {Params: gre.Params{Local: w.Link.Local, Remote: w.Link.Remote, TTL: w.Link.TTL, PMTUDisc: w.Link.PMTUDisc}, Index: 5, Name: "gre1", Kind: "gre", Alias: w.Link.Alias, MTU: w.Link.MTU, Up: true, Multicast: w.Link.Multicast, GRE: true},
		},
		addrs: map[int][]rtnl.Addr{
			2: {{Index: 2, Prefix: pfx("198.51.100.1/24"), Global: true}},
			5: {{Index: 5, Prefix: pfx("10.0.0.1/30"), Broadcast: addr("10.0.0.3"), Global: true}},
		},
		Routes: map[int][]rtnl.Route{
			4: {
				{Dst: pfx("0.0.0.0/0"), Gw: addr("198.51.100.254"), Dev: "eth1", Protocol: 4},
				{Dst: pfx("198.51.100.0/24"), Dev: "eth1", Protocol: 2},
				{Dst: pfx("10.0.0.0/30"), Dev: "gre1", Protocol: 2},
				{Dst: pfx("192.168.2.0/24"), Gw: addr("10.0.0.2"), Dev: "gre1", Protocol: plan.RouteProtocol},
			},
		},
	}
	for _, e := range edits {
		e(s)
	}
	return s
}

func noGRE(s *Snapshot) {
	delete(s.Links, "gre1")
	delete(s.addrs, 5)
	s.Routes = withoutRoutesVia(s.Routes, "gre1")
}

func chainWith(rules ...plan.MSSRule) map[int]mss.State {
	cs := mss.ChainState{Chain: mss.Out, Exists: true, Jump: true, Lines: []string{"-N GRE-HOOK"}}
	for _, r := range rules {
		cs.Lines = append(cs.Lines, "-A GRE-HOOK "+mss.Join(plan.RuleSpec(r)))
	}
	return map[int]mss.State{4: {Family: 4, Chains: []mss.ChainState{cs}}}
}

func commands(steps []Step) []string {
	var out []string
	for _, st := range steps {
		out = append(out, st.Cmds...)
	}
	return out
}

const rule = "-o gre1 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre1 -j TCPMSS --clamp-mss-to-pmtu"

func TestDiff(t *testing.T) {
	w := wantGRE()
	withUp := w
	withUp.Up = []string{"/usr/local/bin/notify", "gre1"}
	def := w
	def.Defaults = []plan.Route{{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.2"), Dev: "gre1", Table: plan.DefaultPolicy.Table, Metric: 1}}
	inTable := rtnl.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.2"), Dev: "gre1", Table: plan.DefaultPolicy.Table, Metric: 1, Protocol: plan.RouteProtocol}
	marked := w
	marked.Link.FwMark = plan.DefaultPolicy.Mark
	edited := w
	edited.Link.TTL, edited.Link.MTU, edited.Link.Remote = 32, 1400, addr("203.0.113.9")
	withUpEdited := edited
	withUpEdited.Up = withUp.Up
	// made is the commands that make w's link, its address and route.
	made := []string{
		"ip tunnel add gre1 mode gre remote 203.0.113.2 local 198.51.100.1 ttl 64",
		"ip link set gre1 alias gre-hook:eth1",
		"ip link set gre1 multicast on",
		"ip link set gre1 mtu 1476",
		"ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre1",
		"ip link set gre1 up",
		"ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre1 proto 176",
	}
	moved := w
	moved.Addrs = []plan.Addr{{Prefix: pfx("10.0.0.5/30"), Broadcast: addr("10.0.0.7")}}
	moved.Routes = []plan.Route{{Dst: pfx("192.168.3.0/24"), Gw: addr("10.0.0.6"), Dev: "gre1"}}
	for _, tc := range []struct {
		name   string
		want   []plan.Tunnel
		kernel *Snapshot
		rec    *state.Record
		chains map[int]mss.State
		cmds   []string
	}{
		{name: "in place", want: []plan.Tunnel{w}, kernel: kernelWith(w), chains: chainWith(w.MSS...)},
		{name: "nothing yet", want: []plan.Tunnel{w}, kernel: kernelWith(w, noGRE), chains: map[int]mss.State{4: {Family: 4, Chains: []mss.ChainState{{Chain: mss.Out}}}}, cmds: append(made,
			"iptables -t mangle -N GRE-HOOK",
			"iptables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK",
			"iptables -t mangle -A GRE-HOOK "+rule,
		)},
		{name: "mtu changed", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.MTU = 1400; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 mtu 1476"}},
		{name: "multicast off", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Multicast = false; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 multicast on"}},
		{name: "link down", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Up = false; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 up"}},
		{name: "address missing", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.addrs[5] = nil }),
			cmds:   []string{"ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre1"}},
		{name: "address not configured", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) {
				s.addrs[5] = append(s.addrs[5], rtnl.Addr{Index: 5, Prefix: pfx("10.9.9.9/32")}, rtnl.Addr{Index: 5, Prefix: pfx("fe80::1/64")})
			}),
			cmds: []string{"ip addr del 10.9.9.9/32 dev gre1"}},
		{name: "route deleted", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.Routes[4] = s.Routes[4][:3] }),
			cmds:   []string{"ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre1 proto 176"}},
		{name: "route changed by someone", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.Routes[4][3].Gw = addr("10.0.0.3") }),
			cmds:   []string{"ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre1 proto 176"}},
		{name: "route no longer configured", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) {
				s.Routes[4] = append(s.Routes[4], rtnl.Route{Dst: pfx("192.168.3.0/24"), Gw: addr("10.0.0.2"), Dev: "gre1", Table: 7, Protocol: plan.RouteProtocol})
			}),
			cmds: []string{"ip route del 192.168.3.0/24 via 10.0.0.2 dev gre1 table 7"}},
		{name: "ttl changed: in place", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.TTL = 10; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 type gre ttl 64  # in place, was ttl 10"}},
		{name: "ttl, mtu and remote edited: in place, then the mtu", want: []plan.Tunnel{edited}, chains: chainWith(w.MSS...), kernel: kernelWith(w),
			cmds: []string{"ip link set gre1 type gre remote 203.0.113.9 ttl 32  # in place, was remote 203.0.113.2 ttl 64", "ip link set gre1 mtu 1400"}},
		{name: "local, tos, pmtudisc and keys: in place", want: []plan.Tunnel{func() plan.Tunnel {
			t := w
			t.Link.Local, t.Link.TOS, t.Link.PMTUDisc, t.Link.TTL, t.Link.IKey, t.Link.OKey = addr("198.51.100.7"), 0x10, false, 0, 7, 8
			return t
		}()}, chains: chainWith(w.MSS...), kernel: kernelWith(w),
			cmds: []string{"ip link set gre1 type gre local 198.51.100.7 ttl 0 tos 0x10 nopmtudisc ikey 7 okey 8  # in place, was local 198.51.100.1 ttl 64 tos 0x0 pmtudisc nokey"}},
		{name: "key taken away: in place", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.IKey, l.OKey = 5, 5; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 type gre nokey  # in place, was key 5"}},
		{name: "mode changed: recreate, routes anew", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Kind, l.TTL = "gretap", 10; s.Links["gre1"] = l }),
			cmds:   append([]string{"ip link del gre1  # mode gre, was gretap: the kernel cannot change a link's kind"}, made...)},
		{name: "remote from none: recreate", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Remote = addr("0.0.0.0"); s.Links["gre1"] = l }),
			cmds:   append([]string{"ip link del gre1  # remote 203.0.113.2, was 0.0.0.0: the kernel cannot make a gre link point-to-point or not"}, made...)},
		{name: "address and routes edited: old routes, then the old address, go last", want: []plan.Tunnel{moved}, chains: chainWith(moved.MSS...), kernel: kernelWith(w),
			cmds: []string{
				"ip addr add 10.0.0.5/30 broadcast 10.0.0.7 dev gre1",
				"ip route replace 192.168.3.0/24 via 10.0.0.6 dev gre1 proto 176",
				"ip route del 192.168.2.0/24 via 10.0.0.2 dev gre1",
				"ip addr del 10.0.0.1/30 dev gre1",
			}},
		{name: "MSS rule deleted", want: []plan.Tunnel{w}, kernel: kernelWith(w), chains: chainWith(),
			cmds: []string{"iptables -t mangle -A GRE-HOOK " + rule}},
		{name: "MSS jump deleted", want: []plan.Tunnel{w}, kernel: kernelWith(w),
			chains: func() map[int]mss.State { c := chainWith(w.MSS...); c[4].Chains[0].Jump = false; return c }(),
			cmds:   []string{"iptables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK"}},
		{name: "MSS off now: chain goes", want: []plan.Tunnel{func() plan.Tunnel { t := w; t.MSS = nil; return t }()}, kernel: kernelWith(w),
			chains: chainWith(w.MSS...),
			cmds: []string{"iptables -t mangle -D GRE-HOOK " + rule, "iptables -t mangle -D POSTROUTING -m comment --comment gre-hook -j GRE-HOOK",
				"iptables -t mangle -X GRE-HOOK"}},
		{name: "up_command only for a touched tunnel", want: []plan.Tunnel{withUp}, kernel: kernelWith(w), chains: chainWith(w.MSS...)},
		// An up_command tells the daemons what they need: a new index, new
		// addresses, the multicast flag. A change in place keeps their VIF.
		{name: "no up_command after a change in place", want: []plan.Tunnel{withUpEdited}, chains: chainWith(w.MSS...), kernel: kernelWith(w),
			cmds: []string{"ip link set gre1 type gre remote 203.0.113.9 ttl 32  # in place, was remote 203.0.113.2 ttl 64", "ip link set gre1 mtu 1400"}},
		{name: "no up_command after a route change", want: []plan.Tunnel{withUp}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.Routes[4] = s.Routes[4][:3] }),
			cmds:   []string{"ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre1 proto 176"}},
		{name: "up_command after an address change", want: []plan.Tunnel{withUp}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.addrs[5] = nil }),
			cmds:   []string{"ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre1", "/usr/local/bin/notify gre1"}},
		{name: "up_command after multicast on", want: []plan.Tunnel{withUp}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Multicast = false; s.Links["gre1"] = l }),
			cmds:   []string{"ip link set gre1 multicast on", "/usr/local/bin/notify gre1"}},
		{name: "up_command after a recreate", want: []plan.Tunnel{withUp}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Kind = "gretap"; s.Links["gre1"] = l }),
			cmds:   append(append([]string{"ip link del gre1  # mode gre, was gretap: the kernel cannot change a link's kind"}, made...), "/usr/local/bin/notify gre1")},
		// The main table's default is never in the commands.
		{name: "default route into gre-hook's table", want: []plan.Tunnel{def}, kernel: kernelWith(w), chains: chainWith(w.MSS...),
			cmds: []string{"ip route replace default via 10.0.0.2 dev gre1 table 18247 metric 1 proto 176"}},
		{name: "default route held", want: []plan.Tunnel{def}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.Routes[4] = append(s.Routes[4], inTable) })},
		{name: "main default changed by the admin", want: []plan.Tunnel{def}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) {
				s.Routes[4][0].Gw = addr("198.51.100.253")
				s.Routes[4] = append(s.Routes[4], inTable)
			})},
		{name: "default_route turned off", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) { s.Routes[4] = append(s.Routes[4], inTable) }),
			cmds:   []string{"ip route del default via 10.0.0.2 dev gre1 table 18247 metric 1"}},
		{name: "previous release's main default is left to its own rule", want: []plan.Tunnel{w}, chains: chainWith(w.MSS...),
			kernel: kernelWith(w, func(s *Snapshot) {
				s.Routes[4][0] = rtnl.Route{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.2"), Dev: "gre1", Protocol: plan.RouteProtocol}
			})},
		{name: "fwmark set in place", want: []plan.Tunnel{marked}, kernel: kernelWith(w), chains: chainWith(w.MSS...),
			cmds: []string{"ip link set gre1 type gre fwmark 0x4747"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := commands(DiffSteps("eth1", tc.want, tc.kernel, tc.rec, tc.chains))
			if strings.Join(got, "\n") != strings.Join(tc.cmds, "\n") {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.cmds, "\n"))
			}
		})
	}
}

// The steps say what status needs: why each differs, and what undoes
// each change.
func TestDiffStepFields(t *testing.T) {
	w := wantGRE()
	def := w
	def.Defaults = []plan.Route{{Dst: pfx("0.0.0.0/0"), Gw: addr("10.0.0.2"), Dev: "gre1", Table: plan.DefaultPolicy.Table, Metric: 1}}
	steps := DiffSteps("eth1", []plan.Tunnel{def}, kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.MTU = 1400; s.Links["gre1"] = l }), nil, chainWith(w.MSS...))
	if len(steps) != 2 {
		t.Fatalf("steps: %q", commands(steps))
	}
	mtu, dflt := steps[0], steps[1]
	if len(mtu.Why) != 1 || mtu.Why[0] != (reason{"gre1", "mtu is 1400, want 1476"}) || mtu.undo == nil {
		t.Errorf("mtu step: %+v", mtu)
	}
	// Nothing is replaced that only the record could put back.
	if dflt.undoCmd != "ip route del default via 10.0.0.2 dev gre1 table 18247 metric 1" ||
		len(dflt.Why) != 1 || dflt.Why[0].Text != "route route replace default via 10.0.0.2 dev gre1 table 18247 metric 1 proto 176 is missing" {
		t.Errorf("default route step: %+v", dflt)
	}
	// A missing link is one difference, however many steps it takes.
	steps = DiffSteps("eth1", []plan.Tunnel{w}, kernelWith(w, noGRE), nil, chainWith(w.MSS...))
	var why []string
	for _, st := range steps {
		for _, r := range st.Why {
			why = append(why, r.Text)
		}
	}
	if strings.Join(why, "; ") != "link gre1 does not exist" {
		t.Errorf("why for a missing link: %q", why)
	}
}

// A change in place says what differs, attribute by attribute, and its
// undo puts each back; a recreate names what forces it.
func TestDiffInPlaceFields(t *testing.T) {
	w := wantGRE()
	edited := w
	edited.Link.TTL, edited.Link.MTU, edited.Link.Remote, edited.Link.IKey, edited.Link.OKey = 32, 1400, addr("203.0.113.9"), 5, 5
	steps := DiffSteps("eth1", []plan.Tunnel{edited}, kernelWith(w), nil, chainWith(w.MSS...))
	if len(steps) != 2 {
		t.Fatalf("steps: %q", commands(steps))
	}
	st := steps[0]
	var why []string
	for _, r := range st.Why {
		why = append(why, r.Text)
	}
	if got := strings.Join(why, "; "); got != "remote is 203.0.113.2, want 203.0.113.9; ttl is 64, want 32; key: have nokey, want key 5" {
		t.Errorf("why: %s", got)
	}
	if st.undoCmd != "ip link set gre1 type gre remote 203.0.113.2 ttl 64 nokey" || st.undo == nil || st.news {
		t.Errorf("in-place step: undo %q, news %v", st.undoCmd, st.news)
	}
	if bareCmd(st.Cmds[0]) != "ip link set gre1 type gre remote 203.0.113.9 ttl 32 key 5" {
		t.Errorf("bare command: %q", bareCmd(st.Cmds[0]))
	}

	steps = DiffSteps("eth1", []plan.Tunnel{w}, kernelWith(w, func(s *Snapshot) { l := s.Links["gre1"]; l.Kind = "ip6gre"; s.Links["gre1"] = l }), nil, chainWith(w.MSS...))
	why = nil
	for _, st := range steps {
		for _, r := range st.Why {
			why = append(why, r.Text)
		}
	}
	if got := strings.Join(why, "; "); got != "mode is ip6gre, want gre; the kernel cannot change a link's kind, so up makes it again" {
		t.Errorf("why for a recreate: %s", got)
	}
}
