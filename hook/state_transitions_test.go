package hook

import (
	"testing"
)

const site1State = `addr eth1 198.51.100.1/24
addr eth1 2001:db8:1::1/64
addr gre-site2 10.0.0.1/30 brd 10.0.0.3
addr gre-site2 fe80::c633:6401/64 scope link
link eth1 mtu 1500 multicast on up
link gre-site2 gre local 198.51.100.1 remote 203.0.113.1 ttl 255 tos 0 pmtudisc on ikey 0 okey 0 fwmark 0x4747 mtu 1476 multicast on up alias gre-hook:eth1
link lo mtu 65536 multicast off up
route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4
route 10.0.0.0/30 dev gre-site2 proto 2
route 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176
route 198.51.100.0/24 dev eth1 proto 2
route 2001:db8:1::/64 dev eth1 metric 256 proto 2
route fe80::/64 dev gre-site2 metric 256 proto 2
iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu
`

const site1Log = `gre-hook: + ip tunnel add gre-site2 mode gre remote 203.0.113.1 local 198.51.100.1 ttl 255
gre-hook: + ip link set gre-site2 alias gre-hook:eth1
gre-hook: + ip link set gre-site2 type gre fwmark 0x4747
gre-hook: + ip link set gre-site2 multicast on
gre-hook: + ip link set gre-site2 mtu 1476
gre-hook: + ip addr add 10.0.0.1/30 broadcast 10.0.0.3 dev gre-site2
gre-hook: + ip link set gre-site2 up
gre-hook: + ip route replace 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176
gre-hook: + iptables -t mangle -N GRE-HOOK
gre-hook: + iptables -t mangle -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
gre-hook: + iptables -t mangle -A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu
`

const site1DownLog = `gre-hook: + iptables -t mangle -D GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu
gre-hook: + iptables -t mangle -D POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
gre-hook: + iptables -t mangle -X GRE-HOOK
gre-hook: + ip link del gre-site2
`

const manyState = `addr eth1 198.51.100.1/24
addr eth1 2001:db8:1::1/64
addr gre-site2 10.0.0.1/30 brd 10.0.0.3
addr gre-site2 fe80::c633:6401/64 scope link
addr gre-v6 10.0.1.0/31
addr gre-v6 fd00::1/127
addr tap-lab 10.0.2.1/24 brd 10.0.2.255
link eth1 mtu 1500 multicast on up
link gre-site2 gre local 198.51.100.1 remote 203.0.113.1 ttl 255 tos 0 pmtudisc on ikey 0 okey 0 fwmark 0x4747 mtu 1476 multicast on up alias gre-hook:eth1
link gre-v6 ip6gre local 2001:db8:1::1 remote 2001:db8:2::1 ttl 255 tos 0 pmtudisc off ikey 42 okey 42 fwmark 0x4747 mtu 1444 multicast on up alias gre-hook:eth1
link lo mtu 65536 multicast off up
link tap-lab gretap local 198.51.100.1 remote 203.0.113.9 ttl 0 tos 0 pmtudisc off ikey 7 okey 8 fwmark 0x4747 mtu 1458 multicast off up alias gre-hook:eth1
route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4
route 10.0.0.0/30 dev gre-site2 proto 2
route 10.0.1.0/31 dev gre-v6 proto 2
route 10.0.2.0/24 dev tap-lab proto 2
route 192.168.10.0/24 via 10.0.1.1 dev gre-v6 table 100 metric 5 proto 176
route 192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176
route 198.51.100.0/24 dev eth1 proto 2
route 2001:db8:1::/64 dev eth1 metric 256 proto 2
route fd00::/127 dev gre-v6 metric 256 proto 2
route fd10::/48 via fd00:: dev gre-v6 metric 1024 proto 176
route fe80::/64 dev gre-site2 metric 256 proto 2
iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu
iptables -A GRE-HOOK -o gre-v6 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-v6 -j TCPMSS --set-mss 1400
ip6tables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
ip6tables -N GRE-HOOK
ip6tables -A GRE-HOOK -o gre-v6 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-v6 -j TCPMSS --set-mss 1400
`

const defaultRouteState = `addr eth1 198.51.100.1/24
addr eth1 2001:db8:1::1/64
addr gre-vpn 10.9.0.2/30 brd 10.9.0.3
addr gre-vpn fe80::c633:6401/64 scope link
link eth1 mtu 1500 multicast on up
link gre-vpn gre local 198.51.100.1 remote 203.0.113.5 ttl 255 tos 0 pmtudisc on ikey 0 okey 0 fwmark 0x4747 mtu 1476 multicast on up alias gre-hook:eth1
link lo mtu 65536 multicast off up
route 0.0.0.0/0 via 10.9.0.1 dev gre-vpn table 18247 metric 1 proto 176
route 0.0.0.0/0 via 198.51.100.254 dev eth1 proto 4
route 10.9.0.0/30 dev gre-vpn proto 2
route 198.51.100.0/24 dev eth1 proto 2
route 2001:db8:1::/64 dev eth1 metric 256 proto 2
route fe80::/64 dev gre-vpn metric 256 proto 2
rule 4 32700: lookup main suppress_prefixlength 0 proto 176
rule 4 32701: not fwmark 0x4747 lookup 18247 proto 176
iptables -A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK
iptables -N GRE-HOOK
iptables -A GRE-HOOK -o gre-vpn -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-vpn -j TCPMSS --clamp-mss-to-pmtu
`

// configs are the configs the transition tests move between.
var configs = []struct {
	name, text string
}{
	{"site1", site1},
	{"site1Edited", site1Edited},
	{"many", many},
	{"defaultRoute", defaultRoute},
	// Two tunnels that reflect keepalives, with their guards.
	{"reflect", reflectConfig},
}

func TestUpGolden(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"site1", site1, site1State},
		{"many", many, manyState},
		{"defaultRoute", defaultRoute, defaultRouteState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diff(t, "state after up", golden(t, tc.config), tc.want)
		})
	}
}

func TestUpUpDownDown(t *testing.T) {
	e := newEnv(t)
	diff(t, "fake baseline", e.dump(), baseline)
	e.write(site1)

	diff(t, "first up log", e.mustRun(PhaseUp), site1Log)
	diff(t, "state after up", e.dump(), site1State)
	if e.record() == "" {
		t.Error("no record after up")
	}
	rec := e.record()
	restores := len(e.fk.V4.Restores)

	if out := e.mustRun(PhaseUp); out != "" {
		t.Errorf("second up logged:\n%s", out)
	}
	diff(t, "state after second up", e.dump(), site1State)
	if n := len(e.fk.V4.Restores); n != restores {
		t.Errorf("second up wrote iptables %d more time(s)", n-restores)
	}
	if e.record() != rec {
		t.Errorf("second up changed the record:\n%s\nwas:\n%s", e.record(), rec)
	}

	diff(t, "down log", e.mustRun(PhaseDown), site1DownLog)
	diff(t, "state after down", e.dump(), baseline)
	if e.record() != "" {
		t.Errorf("record left after down:\n%s", e.record())
	}

	if out := e.mustRun(PhaseDown); out != "" {
		t.Errorf("second down logged:\n%s", out)
	}
	diff(t, "state after second down", e.dump(), baseline)
}

// TestUpTwiceIsQuiet covers every config: a second up changes nothing,
// logs nothing and does not run an up_command again, since no tunnel
// changed.
func TestUpTwiceIsQuiet(t *testing.T) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(c.text)
			e.mustRun(PhaseUp)
			before := e.dump()
			n := len(e.commands)
			if out := e.mustRun(PhaseUp); out != "" {
				t.Errorf("second up logged:\n%s", out)
			}
			if len(e.commands) != n {
				t.Errorf("second up ran %d command(s): %v", len(e.commands)-n, e.commands[n:])
			}
			diff(t, "state after second up", e.dump(), before)
			e.mustRun(PhaseDown)
			diff(t, "state after down", e.dump(), baseline)
		})
	}
}

// TestConfigEdit brings each config up, switches to each other config and
// checks that up converges and that down removes everything.
func TestConfigEdit(t *testing.T) {
	want := map[string]string{}
	for _, c := range configs {
		want[c.name] = golden(t, c.text)
	}
	for _, a := range configs {
		for _, b := range configs {
			if a.name == b.name {
				continue
			}
			t.Run(a.name+"_to_"+b.name+"_up", func(t *testing.T) {
				e := newEnv(t)
				e.write(a.text)
				e.mustRun(PhaseUp)
				e.write(b.text)
				e.mustRun(PhaseUp)
				diff(t, "state after the second up", e.dump(), want[b.name])
				if out := e.mustRun(PhaseUp); out != "" && b.name != "many" {
					t.Errorf("third up logged:\n%s", out)
				}
				e.mustRun(PhaseDown)
				diff(t, "state after down", e.dump(), baseline)
			})
			t.Run(a.name+"_edit_"+b.name+"_down", func(t *testing.T) {
				e := newEnv(t)
				e.write(a.text)
				e.mustRun(PhaseUp)
				e.write(b.text)
				e.mustRun(PhaseDown)
				diff(t, "state after down with an edited config", e.dump(), baseline)
				if e.record() != "" {
					t.Errorf("record left:\n%s", e.record())
				}
			})
		}
	}
}
