//go:build realkernel

package realkernel

import (
	"net/netip"
	"regexp"
	"strconv"
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
// values, and its reflection guard is in mangle GRE-HOOK-IN, and r1's
// keepalives come back through it. With forwarding off, up warns,
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
	for _, line := range []string{"gre-hook: + sysctl -w net.ipv4.conf.gre/site1.accept_local=1", "gre-hook: + sysctl -w net.ipv4.conf.gre/site1.rp_filter=2",
		"gre-hook: + iptables -t mangle -A GRE-HOOK-IN " + guardRule("gre.site1")} {
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

	s.r2.assertGuard("gre.site1")

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
	s.r2.assertClean()
}

// guardRule is gre-hook's reflection guard of tunnel on eth1, as gre-hook
// prints it.
func guardRule(tunnel string) string {
	return "-i " + tunnel + " ! -p gre -m addrtype --src-type LOCAL -m comment --comment gre-hook:eth1:" + tunnel + " -j DROP"
}

// assertGuard checks that n's mangle table holds tunnel's reflection
// guard in GRE-HOOK-IN, jumped to from PREROUTING, in the form gre-hook
// writes (iptables-nft quotes the comment).
func (n *netns) assertGuard(tunnel string) {
	n.t.Helper()
	rules := strings.ReplaceAll(strings.Join(n.mangle("iptables"), "\n"), `"`, "") + "\n"
	for _, want := range []string{
		"-A PREROUTING -m comment --comment gre-hook -j GRE-HOOK-IN\n",
		"-A GRE-HOOK-IN " + guardRule(tunnel) + "\n",
	} {
		if !strings.Contains(rules, want) {
			n.t.Errorf("%s's mangle table lacks %q:\n%s", n.name, strings.TrimSpace(want), rules)
		}
	}
}

var counters = regexp.MustCompile(` -c ([0-9]+) [0-9]+ `)

// guardDrops is how many packets tunnel's reflection guard on n has
// dropped, by the rule's own counter.
func (n *netns) guardDrops(tunnel string) uint64 {
	n.t.Helper()
	out := n.exec("iptables", "-t", "mangle", "-v", "-S", "GRE-HOOK-IN")
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "-i "+tunnel+" ") {
			continue
		}
		if m := counters.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			return v
		}
	}
	n.t.Fatalf("no counters for %s's guard in %s's GRE-HOOK-IN:\n%s", tunnel, n.name, out)
	return 0
}

// TestReflectionGuard: r2 is a plain Linux peer, its tunnel made with ip
// commands and set up to reflect; r1 runs gre-hook with a keepalive on
// gre-site2, so the tunnel reflects and has its guard, and gre-hook
// watch. Through the guard:
//   - a UDP packet that r2 sends in through the tunnel with r1's own
//     address as source, for r1 itself, is not delivered, and the guard's
//     counter counts it;
//   - r2's keepalives (GRE from r1's own address, inside GRE) are
//     reflected;
//   - the watcher's keepalives get r2's replies, and the peer stays alive.
//
// The guard deleted by hand, the same packet is delivered (so the guard
// is what stops it), status calls it drift, and up puts it back.
func TestReflectionGuard(t *testing.T) {
	t.Parallel()
	s := plainPeerSites(t)
	s.r1.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	cfg := writeConfig(t, kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", ""))
	withCleanState(s.r1)
	res := s.r1.up(cfg, "eth1")
	if line := "gre-hook: + iptables -t mangle -A GRE-HOOK-IN " + guardRule("gre-site2") + "\n"; !strings.Contains(res.stderr, line) {
		t.Errorf("up did not print %q:\n%s", line, res.stderr)
	}
	s.r1.assertGuard("gre-site2")
	if res := s.r1.up(cfg, "eth1"); res.stderr != "" {
		t.Errorf("second up printed:\n%s", res.stderr)
	}
	w := startWatch(t, s.r1, cfg)
	w.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)

	own, tunAddr := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("10.0.0.1")
	before := s.r1.guardDrops("gre-site2")
	if spoofedDelivered(t, s.r2, s.r1, own, tunAddr, 9999) {
		t.Errorf("a UDP packet from r1's own %s to its %s, sent in through the tunnel, was delivered through the guard", own, tunAddr)
	}
	dropped := s.r1.guardDrops("gre-site2") - before
	if dropped < 3 {
		t.Errorf("the guard counted %d of the 3 spoofed packets", dropped)
	}
	t.Logf("the guard dropped %d packets while r2 sent 3 spoofed ones", dropped)

	c := kaOpen(t, s.r2)
	ch := kaListen(t, c)
	if rtt, ok := awaitReply(t, c, ch, kaSite2, kaSite1, 500*time.Millisecond, 20*time.Second); !ok {
		t.Errorf("with the guard, r1 did not reflect r2's keepalives in 20s")
	} else {
		t.Logf("with the guard, r2's keepalive came back after %v", rtt)
	}
	aliveFor := func(within time.Duration) bool {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if l := s.r1.liveness(); len(l) == 1 && l[0].Alive && l[0].LastReply != nil && time.Since(*l[0].LastReply) < 3*time.Second {
				return true
			}
		}
		return false
	}
	if !aliveFor(15 * time.Second) {
		t.Errorf("the watcher on r1 has no recent reply from r2: %+v", s.r1.liveness())
	}

	// Without the guard the same packet is delivered.
	s.r1.exec("iptables", append([]string{"-t", "mangle", "-D", "GRE-HOOK-IN"}, strings.Fields(guardRule("gre-site2"))...)...)
	if !spoofedDelivered(t, s.r2, s.r1, own, tunAddr, 9998) {
		t.Error("with the guard deleted by hand, the spoofed packet was not delivered either: the check above proves nothing")
	}
	st := s.r1.gh(nil, "status", "--config", cfg, "--iface", "eth1")
	if st.code != 3 || !strings.Contains(st.stdout, "  - iptables reflection guard is missing: "+guardRule("gre-site2")+"\n") {
		t.Errorf("status with the guard deleted exited %d:\n%s%s", st.code, st.stdout, st.stderr)
	}
	res = s.r1.up(cfg, "eth1")
	if want := "gre-hook: + iptables -t mangle -A GRE-HOOK-IN " + guardRule("gre-site2") + "\n"; res.stderr != want {
		t.Errorf("the repairing up printed:\n%s\nwant:\n%s", res.stderr, want)
	}
	if spoofedDelivered(t, s.r2, s.r1, own, tunAddr, 9997) {
		t.Error("the spoofed packet was delivered after up put the guard back")
	}
	drain(ch)
	if _, ok := awaitReply(t, c, ch, kaSite2, kaSite1, 500*time.Millisecond, 20*time.Second); !ok {
		t.Error("after the repair, no reflected keepalive in 20s")
	}
	if !aliveFor(5 * time.Second) {
		t.Errorf("after the repair, the watcher on r1 has no recent reply from r2: %+v", s.r1.liveness())
	}
	if strings.Contains(w.log.String(), " dead: ") {
		t.Errorf("the watcher called r2 dead:\n%s", w.log.String())
	}

	s.r1.down(cfg, "eth1")
	s.r1.assertClean()
}
