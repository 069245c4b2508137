//go:build realkernel

package realkernel

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestReflectionByGreHook: r1 is a plain peer (its tunnel made with the
// seed's ip commands) that sends keepalives; r2 runs gre-hook with
// keepalive_reflect on a tunnel named gre.site1, whose '.' sysctl(8)
// writes as '/'. After up, r2's tunnel has accept_local=1 and rp_filter=2
// (loose, the narrowest filter under which the reflected packet, whose
// source is r2's own address, passes) though conf.default has other
// values, and r1's keepalives come back. With forwarding off, up warns,
// naming the sysctl, and leaves it as it is, and no reply comes; a strict
// conf.all.rp_filter needs no warning: the tunnel's loose value is the
// larger, which the kernel applies, and the replies still come.
func TestReflectionByGreHook(t *testing.T) {
	t.Parallel()
	s := newTwoSites(t, "", "", false)
	for _, r := range []struct {
		ns       *netns
		addr, gw string
	}{{s.r1, "198.51.100.1/24", "198.51.100.254"}, {s.r2, "203.0.113.1/24", "203.0.113.254"}} {
		r.ns.ip("addr", "add", r.addr, "dev", "eth1")
		r.ns.ip("link", "set", "eth1", "up")
		r.ns.ip("route", "add", "default", "via", r.gw)
	}
	// r1: the seed's commands, and what a Linux sender needs to see the
	// replies (they need no reflection on r1's side).
	s.r1.ip("tunnel", "add", "gre-site2", "mode", "gre", "remote", "203.0.113.1", "local", "198.51.100.1", "ttl", "255")
	s.r1.ip("link", "set", "gre-site2", "up", "multicast", "on")
	s.r1.ip("addr", "add", "10.0.0.1/30", "broadcast", "10.0.0.3", "dev", "gre-site2")

	// r2: a new link gets conf.default's values; make them the ones that
	// stop reflection, so that only gre-hook's settings can make it work.
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.default.accept_local=0")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	s.r2.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	cfg := writeConfig(t, `
[[tunnel]]
name = "gre.site1"
underlay = "eth1"
local = "203.0.113.1"
remote = "198.51.100.1"
ttl = 255
address = ["10.0.0.2/30"]
keepalive_reflect = true
`)
	res := s.r2.up(cfg, "eth1")
	for _, line := range []string{"gre-hook: + sysctl -w net.ipv4.conf.gre/site1.accept_local=1", "gre-hook: + sysctl -w net.ipv4.conf.gre/site1.rp_filter=2"} {
		if !strings.Contains(res.stderr, line+"\n") {
			t.Errorf("up did not print %q:\n%s", line, res.stderr)
		}
	}
	if strings.Contains(res.stderr, "warning") {
		t.Errorf("up warned with forwarding on and rp_filter off:\n%s", res.stderr)
	}
	// What the kernel says, read as the printed commands name it and by
	// path.
	for key, want := range map[string]string{
		"net.ipv4.conf.gre/site1.accept_local": "1",
		"net.ipv4.conf.gre/site1.rp_filter":    "2",
		"net.ipv4.conf.default.rp_filter":      "1",
		"net.ipv4.conf.default.accept_local":   "0",
		"net.ipv4.conf.all.rp_filter":          "0",
		"net.ipv4.ip_forward":                  "1",
	} {
		if got := s.r2.sysctl(key); got != want {
			t.Errorf("r2's %s is %s, want %s", key, got, want)
		}
	}
	for _, f := range []string{"accept_local", "rp_filter"} {
		got := strings.TrimSpace(s.r2.exec("cat", "/proc/sys/net/ipv4/conf/gre.site1/"+f))
		if want := map[string]string{"accept_local": "1", "rp_filter": "2"}[f]; got != want {
			t.Errorf("/proc/sys/net/ipv4/conf/gre.site1/%s is %s, want %s", f, got, want)
		}
	}

	c := kaOpen(t, s.r1)
	ch := kaListen(t, c)
	rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second)
	if !ok {
		t.Fatalf("gre-hook's tunnel on r2 did not reflect r1's keepalives in 20s; r2's gre.site1:\n%s", s.r2.ip("-s", "link", "show", "gre.site1"))
	}
	t.Logf("reflected by gre-hook's tunnel: reply %v after the keepalive", rtt)

	// A second up changes nothing and says nothing.
	if res := s.r2.up(cfg, "eth1"); res.stderr != "" {
		t.Errorf("second up printed:\n%s", res.stderr)
	}

	// A strict conf.all.rp_filter: the tunnel's loose 2 is the larger,
	// so replies still come, and up has nothing to warn about.
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
	if res := s.r2.up(cfg, "eth1"); strings.Contains(res.stderr, "warning") {
		t.Errorf("conf.all.rp_filter=1: up warned:\n%s", res.stderr)
	}
	drain(ch)
	if rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second); !ok {
		t.Error("conf.all.rp_filter=1: no reply in 20s, though the tunnel's rp_filter=2 is the larger")
	} else {
		t.Logf("with conf.all.rp_filter=1 and the tunnel's 2: reply %v after the keepalive", rtt)
	}
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")

	// A global that defeats reflection: a warning naming it, and the
	// setting left as the admin has it.
	for _, g := range []struct{ key, bad, good, warning string }{
		{"net.ipv4.ip_forward", "0", "1", "gre-hook: warning: net.ipv4.ip_forward is 0: tunnel gre.site1 cannot reflect"},
	} {
		s.r2.exec("sysctl", "-qw", g.key+"="+g.bad)
		res := s.r2.up(cfg, "eth1")
		if n := strings.Count(res.stderr, g.warning); n != 1 {
			t.Errorf("%s=%s: up printed %d warnings starting %q, want 1:\n%s", g.key, g.bad, n, g.warning, res.stderr)
		}
		if got := s.r2.sysctl(g.key); got != g.bad {
			t.Errorf("up changed %s from %s to %s", g.key, g.bad, got)
		}
		// And the warning is right: no reply comes.
		drain(ch)
		if rtt, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 3*time.Second); ok {
			t.Errorf("%s=%s: a reply came %v after a keepalive, though the warning says none can", g.key, g.bad, rtt)
		}
		s.r2.exec("sysctl", "-qw", g.key+"="+g.good)
	}

	// The residue: accept_local lets in, through the tunnel, a packet
	// with r2's own source for r2 itself. The narrow rule (documented
	// for keepalive_reflect) drops local-source packets that come in
	// through the tunnel unless they are GRE, the reflected keepalives;
	// the keepalives still come back with it.
	own, tunAddr := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("10.0.0.2")
	residue := spoofedDelivered(t, s.r1, s.r2, own, tunAddr, 9999)
	t.Logf("without the rule, a UDP packet from r2's own %s to its %s, sent in through the tunnel, is delivered: %v", own, tunAddr, residue)
	guard := []string{"-t", "mangle", "-A", "PREROUTING", "-i", "gre.site1", "-m", "addrtype", "--src-type", "LOCAL", "!", "-p", "gre",
		"-j", "DROP"}
	s.r2.exec("iptables", guard...)
	if spoofedDelivered(t, s.r1, s.r2, own, tunAddr, 9998) {
		t.Error("with the rule, the spoofed packet is still delivered")
	}
	drain(ch)
	if _, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second); !ok {
		t.Error("with the rule, no reply in 20s")
	}
	guard[2] = "-D"
	s.r2.exec("iptables", guard...)

	// A tunnel made anew (down, up) gets the settings again.
	s.r2.down(cfg, "eth1")
	s.r2.up(cfg, "eth1")
	if a, r := s.r2.sysctl("net.ipv4.conf.gre/site1.accept_local"), s.r2.sysctl("net.ipv4.conf.gre/site1.rp_filter"); a != "1" || r != "2" {
		t.Errorf("after down and up: accept_local %s, rp_filter %s; want 1 and 2", a, r)
	}
	drain(ch)
	if _, ok := awaitReply(t, c, ch, kaSite1, kaSite2, 500*time.Millisecond, 20*time.Second); !ok {
		t.Error("no reply in 20s after down and up")
	}
	s.r2.down(cfg, "eth1")
}
