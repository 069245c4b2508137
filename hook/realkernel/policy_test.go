//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// The default route by policy routing (hook/POLICY-ROUTING.md), on the
// real kernel: the design made by hand with plain ip commands, then the
// same by gre-hook, failover through the watcher over two WAN underlays,
// and the migration from the previous release's main-table default.

const (
	polTable = "18247"
	polMark  = "0x4747"
)

// ourRules lists the rules of both families with gre-hook's protocol.
func (n *netns) ourRules() []string {
	n.t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(n.ip(fam, "rule", "show"), "\n") {
			if strings.Contains(l, "proto 176") || strings.Contains(l, "proto gre-hook") {
				out = append(out, fam+" "+strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return out
}

// mainDefault is `ip route show table main default`, byte for byte.
func (n *netns) mainDefault() string {
	n.t.Helper()
	return n.ip("-4", "route", "show", "table", "main", "default") + n.ip("-6", "route", "show", "table", "main", "default")
}

// routeGet is `ip route get DST [mark M]`, on one line.
func (n *netns) routeGet(dst, mark string) string {
	n.t.Helper()
	args := []string{"route", "get", dst}
	if mark != "" {
		args = append(args, "mark", mark)
	}
	out, err := n.try("ip", args...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	return strings.Join(strings.Fields(out), " ")
}

func (n *netns) mustRouteVia(what, dst, mark, dev string) {
	n.t.Helper()
	if got := n.routeGet(dst, mark); !strings.Contains(got, " dev "+dev+" ") {
		n.t.Fatalf("%s: ip route get %s mark %q: %q, want dev %s", what, dst, mark, got, dev)
	}
}

// counter reads one of a link's statistics (rx_packets, tx_errors, ...).
func (n *netns) counter(dev, name string) uint64 {
	n.t.Helper()
	// /sys/class/net shows the namespace of the process that mounted
	// it: read it from inside n.
	out := n.exec("cat", filepath.Join("/sys/class/net", dev, "statistics", name))
	var v uint64
	fmt.Sscan(out, &v)
	return v
}

// policySites is the two-site scenario with the internet beyond site2:
// 192.0.2.99 is an address of site2's router that only the tunnel
// reaches, so a packet to it that arrives went through the tunnel. The
// peer's tunnel is made by the seed's own ip commands and reflects.
func policySites(t *testing.T) *twoSites {
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	s.r2.ip("tunnel", "add", "gre-site1", "mode", "gre", "remote", "198.51.100.1", "local", "203.0.113.1", "ttl", "255")
	s.r2.ip("link", "set", "gre-site1", "up")
	s.r2.ip("addr", "add", "10.0.0.2/30", "dev", "gre-site1")
	s.r2.ip("route", "add", "192.168.1.0/24", "via", "10.0.0.1")
	s.r2.ip("addr", "add", "192.0.2.99/32", "dev", "lo")
	reflectKeepalives(s.r2, "gre-site1")
	return s
}

// checkPolicyPaths: traffic to the internet from the LAN and from the
// router itself goes through the tunnel, the tunnel's own (marked) packets
// and the main table's specific routes go by main, nothing loops.
func checkPolicyPaths(t *testing.T, s *twoSites, tunnel, underlay, mainDev string) {
	t.Helper()
	checkPolicyPathsOf(t, s, tunnel, underlay, mainDev, polTable, polMark)
}

// checkPolicyPathsOf is checkPolicyPaths with the table and fwmark of a
// [policy] table.
func checkPolicyPathsOf(t *testing.T, s *twoSites, tunnel, underlay, mainDev, table, mark string) {
	t.Helper()
	r1 := s.r1
	if got := r1.routeGet("192.0.2.99", ""); !strings.Contains(got, " dev "+tunnel+" ") || !strings.Contains(got, " table "+table+" ") {
		t.Fatalf("ip route get 192.0.2.99: %q, want dev %s table %s", got, tunnel, table)
	}
	r1.mustRouteVia("the outer packets", "203.0.113.1", mark, underlay)
	r1.mustRouteVia("marked traffic elsewhere, by the main default", "192.0.2.99", mark, mainDev)
	r1.mustRouteVia("a connected route of main", "198.51.100.254", "", underlay)
	r1.mustRouteVia("a LAN route of main", "192.168.2.10", "", tunnel)
	txErr := r1.counter(tunnel, "tx_errors")
	rx := s.r2.counter("gre-site1", "rx_packets")
	for _, src := range []*netns{s.h1, r1} {
		if out, err := src.try("ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.99"); err != nil {
			t.Fatalf("ping 192.0.2.99 from %s: %v\n%s", src.name, err, out)
		}
	}
	// Six echo requests came out of the peer's tunnel; none was lost to a
	// loop (the kernel counts a packet routed into its own tunnel as a
	// transmit error: "dead loop").
	if got := s.r2.counter("gre-site1", "rx_packets") - rx; got < 6 {
		t.Errorf("the peer's tunnel received %d packets for 6 pings", got)
	}
	if got := r1.counter(tunnel, "tx_errors") - txErr; got != 0 {
		t.Errorf("%d transmit errors on %s (a loop?)", got, tunnel)
	}
}

// TestPolicyRoutingByHand checks the design before gre-hook builds on it,
// with plain ip commands only: a tunnel marking its outer packets, its
// default in a table of its own, and the two rules.
func TestPolicyRoutingByHand(t *testing.T) {
	t.Parallel()
	s := policySites(t)
	main := s.r1.mainDefault()
	r1 := s.r1
	r1.ip("link", "add", "gre-site2", "type", "gre", "local", "198.51.100.1", "remote", "203.0.113.1", "ttl", "255", "fwmark", polMark)
	r1.ip("link", "set", "gre-site2", "up")
	r1.ip("addr", "add", "10.0.0.1/30", "dev", "gre-site2")
	r1.ip("route", "add", "192.168.2.0/24", "via", "10.0.0.2")
	r1.ip("route", "add", "default", "via", "10.0.0.2", "dev", "gre-site2", "table", polTable)
	r1.ip("rule", "add", "priority", "32700", "lookup", "main", "suppress_prefixlength", "0")
	r1.ip("rule", "add", "priority", "32701", "not", "fwmark", polMark, "lookup", polTable)
	checkPolicyPaths(t, s, "gre-site2", "eth1", "eth1")
	// Without the mark on the tunnel, the outer packets would take the
	// table too, into the tunnel itself: the kernel refuses them.
	if got := r1.routeGet("203.0.113.1", ""); !strings.Contains(got, "dev gre-site2") {
		t.Errorf("unmarked, the remote is routed %q: the mark is what keeps the outer packets out", got)
	}
	if got := r1.mainDefault(); got != main {
		t.Errorf("main default changed: %q, was %q", got, main)
	}
}

// TestPolicyRoutingByGreHook: gre-hook's up makes that design (link mark,
// route in its table, the rules with its protocol), the paths are the
// same, the main table's default is byte for byte as it was, and down
// leaves nothing.
func TestPolicyRoutingByGreHook(t *testing.T) {
	t.Parallel()
	s := policySites(t)
	s.r1 = withCleanState(s.r1)
	main := s.r1.mainDefault()
	cfg := writeConfig(t, kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "default_route = true"))
	dry := s.r1.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run")
	fixture.MustContain(t, "--dry-run", dry.stderr,
		"ip link set gre-site2 type gre fwmark 0x4747\n",
		"ip route replace default via 10.0.0.2 dev gre-site2 table 18247 metric 1 proto 176\n",
		"ip rule add priority 32700 lookup main suppress_prefixlength 0 proto 176\n",
		"ip rule add priority 32701 not fwmark 0x4747 lookup 18247 proto 176\n",
	)
	s.r1.up(cfg, "eth1")
	if got := s.r1.mainDefault(); got != main {
		t.Fatalf("up changed the main default: %q, was %q", got, main)
	}
	if d := s.r1.ip("-d", "link", "show", "gre-site2"); !strings.Contains(d, "fwmark "+polMark) {
		t.Errorf("the link has no fwmark:\n%s", d)
	}
	rules := strings.Join(s.r1.ourRules(), "\n")
	for _, want := range []string{"-4 32700: from all lookup main suppress_prefixlength 0 proto", "-4 32701: not from all fwmark 0x4747 lookup " + polTable + " proto"} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	checkPolicyPaths(t, s, "gre-site2", "eth1", "eth1")
	if r := s.r1.gh(nil, "status", "--config", cfg, "--iface", "eth1"); r.code != 0 {
		t.Errorf("status after up: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Drift in the rules is seen by status and mended by up.
	s.r1.ip("rule", "del", "priority", "32701")
	if r := s.r1.gh(nil, "status", "--config", cfg, "--iface", "eth1"); r.code != 3 || !strings.Contains(r.stdout, "ip rule add priority 32701 not fwmark 0x4747 lookup 18247 proto 176") {
		t.Errorf("status with a rule missing: %d\n%s", r.code, r.stdout)
	}
	s.r1.up(cfg, "eth1")
	checkPolicyPaths(t, s, "gre-site2", "eth1", "eth1")
	s.r1.down(cfg, "eth1")
	s.r1.assertClean()
	if rules := s.r1.ourRules(); len(rules) != 0 {
		t.Errorf("rules left: %q", rules)
	}
	if got := s.r1.mainDefault(); got != main {
		t.Errorf("down changed the main default: %q, was %q", got, main)
	}
}

// twoWANs makes site1's router a two-WAN one: eth1 (the tunnel's
// underlay, to the remote by a route of the admin's) and eth2, which
// carries the main table's default: the backup. 198.18.0.1 is a host of
// the internet, which routes site1's LAN back through eth2.
func twoWANs(t *testing.T, s *twoSites) {
	veth(t, s.r1, "eth2", s.inet, "to-r1b")
	s.inet.ip("addr", "add", "100.64.0.254/24", "dev", "to-r1b")
	s.inet.ip("link", "set", "to-r1b", "up")
	s.inet.ip("addr", "add", "198.18.0.1/32", "dev", "lo")
	s.inet.ip("route", "add", "192.168.1.0/24", "via", "100.64.0.1")
	s.r1.ip("addr", "add", "100.64.0.1/24", "dev", "eth2")
	s.r1.ip("link", "set", "eth2", "up")
	s.r1.ip("route", "del", "default")
	s.r1.ip("route", "add", "default", "via", "100.64.0.254", "dev", "eth2", "proto", "static")
	s.r1.ip("route", "add", "203.0.113.0/24", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
	for _, k := range []string{"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth2.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0"} {
		s.r1.exec("sysctl", "-qw", k)
	}
}

func (n *netns) tableRoutes() string {
	n.t.Helper()
	return strings.TrimSpace(n.ip("-4", "route", "show", "table", polTable))
}

// TestWatchFailoverByPolicy: a default_route tunnel with keepalives on a
// two-WAN router. The underlay set down by hand (no ifdown), and with
// local = "auto" the underlay losing its address, both take the tunnel's
// default out of gre-hook's table within interval x (retries + 1) + 1 s,
// so the main table's default (eth2) carries the traffic; the path's
// return puts it back. The main default is byte for byte the same
// throughout, a config edit made meanwhile is not applied, and a watcher
// killed with SIGKILL mid-failover and started again converges. Times are
// measured over several runs.
func TestWatchFailoverByPolicy(t *testing.T) {
	t.Parallel()
	const interval, retries, runs = time.Second, 3, 3
	bound := interval*(retries+1) + time.Second
	for _, tc := range []struct {
		name, local string
		cut, mend   func(s *twoSites)
	}{
		{"underlay down by hand", "198.51.100.1",
			func(s *twoSites) { s.r1.ip("link", "set", "eth1", "down") },
			func(s *twoSites) {
				s.r1.ip("link", "set", "eth1", "up")
				// The kernel flushed the admin's route with the link.
				s.r1.ip("route", "replace", "203.0.113.0/24", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
			}},
		{"underlay loses its address, local auto", "auto",
			func(s *twoSites) { s.r1.ip("addr", "del", "198.51.100.1/24", "dev", "eth1") },
			func(s *twoSites) {
				s.r1.ip("addr", "add", "198.51.100.1/24", "dev", "eth1")
				s.r1.ip("route", "replace", "203.0.113.0/24", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
			}},
	} {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := policySites(t)
			twoWANs(t, s)
			s.r1 = withCleanState(s.r1)
			cfg := writeConfig(t, kaConfig("gre-site2", tc.local, "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "default_route = true"))
			main := s.r1.mainDefault()
			sameMain := func(when string) {
				t.Helper()
				if got := s.r1.mainDefault(); got != main {
					t.Fatalf("%s: the main default is %q, was %q", when, got, main)
				}
			}
			s.r1.up(cfg, "eth1")
			sameMain("after up")
			want := s.r1.tableRoutes()
			if !strings.Contains(want, "default via 10.0.0.2 dev gre-site2") {
				t.Fatalf("table %s after up: %q", polTable, want)
			}
			checkPolicyPaths(t, s, "gre-site2", "eth1", "eth2")
			w := startWatch(t, s.r1, cfg)
			w.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
			w.waitAlive(s.r1, 15*time.Second)

			// A pending edit, not applied by ifup: a new MTU and a route.
			if err := os.WriteFile(cfg, []byte(strings.Replace(kaConfig("gre-site2", tc.local, "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "default_route = true\nmtu = 1400"), `to = "192.168.2.0/24"`, "to = \"192.168.2.0/24\"\n[[tunnel.route]]\nto = \"192.168.77.0/24\"", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			var gone, back []string
			for run := 0; run < runs; run++ {
				cutAt := time.Now()
				tc.cut(s)
				goneAt := waitFor(t, 30*time.Second, func() bool { return s.r1.tableRoutes() == "" })
				sameMain("after the failover")
				s.r1.mustRouteVia("after the failover", "198.18.0.1", "", "eth2")
				for _, src := range []*netns{s.r1, s.h1} {
					if out, err := src.try("ping", "-c", "2", "-i", "0.3", "-W", "2", "198.18.0.1"); err != nil {
						t.Fatalf("run %d: ping 198.18.0.1 from %s over the backup route: %v\n%s", run, src.name, err, out)
					}
				}
				time.Sleep(interval / 2)
				mendAt := time.Now()
				tc.mend(s)
				backAt := waitFor(t, 30*time.Second, func() bool { return s.r1.tableRoutes() == want })
				sameMain("after the recovery")
				checkPolicyPaths(t, s, "gre-site2", "eth1", "eth2")
				if l, ok := s.r1.link("gre-site2"); !ok || l.Mtu != 1476 {
					t.Errorf("run %d: the failover applied the pending MTU: %+v", run, l)
				}
				if r := s.r1.ip("route", "show", "192.168.77.0/24"); strings.TrimSpace(r) != "" {
					t.Errorf("run %d: the failover applied the pending route: %s", run, r)
				}
				g, b := goneAt.Sub(cutAt), backAt.Sub(mendAt)
				gone, back = append(gone, fmt.Sprintf("%.2fs", g.Seconds())), append(back, fmt.Sprintf("%.2fs", b.Seconds()))
				// 4s of slack for the shared, emulated VM.
				if g > bound+4*time.Second {
					t.Errorf("run %d: failover took %v, bound %v", run, g, bound)
				}
				if b > 2*interval+4*time.Second {
					t.Errorf("run %d: recovery took %v", run, b)
				}
			}
			t.Logf("FIGURES %s: interval %v retries %d bound %v: failover (cut to route gone) %s; recovery (mend to route back) %s",
				tc.name, interval, retries, bound, strings.Join(gone, " "), strings.Join(back, " "))

			// SIGKILL mid-failover: as soon as the watcher says the peer is
			// dead, before or while it withdraws the routes.
			tc.cut(s)
			w.waitLog("gre-site2: peer 203.0.113.1 dead", 1, 20*time.Second)
			w.kill()
			w2 := startWatch(t, s.r1, cfg)
			waitFor(t, 30*time.Second, func() bool { return s.r1.tableRoutes() == "" })
			sameMain("after the restarted watcher's failover")
			tc.mend(s)
			waitFor(t, 30*time.Second, func() bool { return s.r1.tableRoutes() == want })
			sameMain("after the restarted watcher's recovery")
			checkPolicyPaths(t, s, "gre-site2", "eth1", "eth2")
			_ = w2
			// An admin's change of the main default is left as it is.
			s.r1.ip("route", "replace", "default", "via", "100.64.0.253", "dev", "eth2", "proto", "static")
			main = s.r1.mainDefault()
			s.r1.up(cfg, "eth1")
			sameMain("after an up following the admin's change")
			s.r1.down(cfg, "eth1")
			sameMain("after down")
			s.r1.assertClean()
			if r := s.r1.ourRules(); len(r) != 0 {
				t.Errorf("rules left: %q", r)
			}
		})
	}
}

// waitFor polls cond every 200ms for at most within, and returns when it
// first held. cond runs ip: under emulation each run is a few hundred ms
// of CPU, and a finer poll would take the CPU from what it waits for.
func waitFor(t *testing.T, within time.Duration, cond func() bool) time.Time {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return time.Now()
		}
	}
	t.Fatalf("not so after %v", within)
	return time.Time{}
}

// waitAlive waits for the liveness file to show the peer answering.
func (w *watchProc) waitAlive(n *netns, within time.Duration) {
	w.t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if l := n.liveness(); len(l) == 1 && l[0].Alive && l[0].LastReply != nil {
			return
		}
	}
	w.t.Fatalf("the peer does not answer: %+v\n%s", n.liveness(), w.log.String())
}

// oldBin is the previous release's gre-hook (GRE_HOOK_OLD_BIN), built
// from 3e0070c, the last commit before policy routing.
func oldBin(t *testing.T) string {
	t.Helper()
	b := os.Getenv("GRE_HOOK_OLD_BIN")
	if b == "" || !filepath.IsAbs(b) {
		t.Fatal("GRE_HOOK_OLD_BIN must be the absolute path of gre-hook built at 3e0070c (the release before policy routing)")
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// monitorRoutes runs `ip monitor route` in n until stop, which returns
// what it printed.
func monitorRoutes(t *testing.T, n *netns) (stop func() string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.name, "ip", "-4", "monitor", "route")
	buf := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	return func() string {
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		return buf.String()
	}
}

// TestMigrationFromPreviousRelease: an underlay brought up by the release
// before policy routing (the main default replaced by the tunnel's, a pin
// to the remote, a record with both) is taken down by this one with the
// main default put back byte for byte; and an up by this one moves it to
// the new form without a moment without a main default: `ip monitor`
// shows the main default replaced, never deleted.
func TestMigrationFromPreviousRelease(t *testing.T) {
	t.Parallel()
	old := oldBin(t)
	ns := withDefault(t)
	cfg := writeConfig(t, `[[tunnel]]
name = "gre-vpn"
underlay = "eth1"
local = "198.51.100.1"
remote = "203.0.113.5"
address = ["10.9.0.2/30"]
default_route = true
[[tunnel.route]]
to = "192.168.9.0/24"
`)
	main := ns.mainDefault()
	oldUp := func() {
		ns.bin = old
		ns.up(cfg, "eth1")
		ns.bin = ""
		ns.assertDefault("after the old release's up", "default via 10.9.0.1 dev gre-vpn proto "+protoOurs)
		if r := ns.ip("route", "show", "203.0.113.5/32"); !strings.Contains(r, "via 198.51.100.254 dev eth1") {
			t.Fatalf("no pin after the old release's up: %q", r)
		}
	}
	t.Run("down by the new release", func(t *testing.T) {
		oldUp()
		ns.down(cfg, "eth1")
		if got := ns.mainDefault(); got != main {
			t.Fatalf("after down: main default %q, was %q", got, main)
		}
		ns.assertClean()
	})
	t.Run("up by the new release", func(t *testing.T) {
		oldUp()
		stop := monitorRoutes(t, ns)
		r := ns.up(cfg, "eth1")
		events := stop()
		t.Logf("the migrating up logged:\n%s\nip monitor route:\n%s", r.stderr, events)
		for _, l := range strings.Split(events, "\n") {
			if strings.HasPrefix(l, "Deleted default") && !strings.Contains(l, " table ") {
				t.Errorf("the main default was deleted during the migration: %q", l)
			}
		}
		if got := ns.mainDefault(); got != main {
			t.Fatalf("after the migration: main default %q, was %q", got, main)
		}
		if r := strings.TrimSpace(ns.ip("route", "show", "203.0.113.5/32")); r != "" {
			t.Errorf("the pin is left: %q", r)
		}
		if got := ns.tableRoutes(); !strings.Contains(got, "default via 10.9.0.1 dev gre-vpn") {
			t.Errorf("table %s: %q", polTable, got)
		}
		if len(ns.ourRules()) != 2 {
			t.Errorf("rules: %q", ns.ourRules())
		}
		if d := ns.ip("-d", "link", "show", "gre-vpn"); !strings.Contains(d, "fwmark "+polMark) {
			t.Errorf("the link has no fwmark:\n%s", d)
		}
		if rec := strings.Join(ns.recordsText(), ""); strings.Contains(rec, `"replaced"`) || strings.Contains(rec, `"pin"`) {
			t.Errorf("the record keeps the old form:\n%s", rec)
		}
		// A second up has nothing to do; down leaves nothing.
		if r := ns.up(cfg, "eth1"); strings.Contains(r.stderr, "gre-hook: + ") {
			t.Errorf("a second up changed things:\n%s", r.stderr)
		}
		ns.down(cfg, "eth1")
		if got := ns.mainDefault(); got != main {
			t.Fatalf("after down: main default %q, was %q", got, main)
		}
		ns.assertClean()
	})
}

// recordsText is the text of the namespace's records.
func (n *netns) recordsText() []string {
	n.t.Helper()
	var out []string
	names, _ := filepath.Glob(filepath.Join(n.stateDir(), "*.json"))
	for _, p := range names {
		b, _ := os.ReadFile(p)
		out = append(out, string(b))
	}
	return out
}

// TestPolicyRoutingIPv6: a tunnel with an IPv6 peer gets its IPv6 default
// in gre-hook's table and the IPv6 rules, the same as IPv4; the main
// table's IPv6 default is untouched, and down leaves nothing.
func TestPolicyRoutingIPv6(t *testing.T) {
	t.Parallel()
	ns := withDefault(t)
	ns.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth1", "nodad")
	ns.ip("-6", "route", "add", "default", "via", "2001:db8:1::254", "dev", "eth1", "proto", "static")
	main := ns.mainDefault()
	cfg := writeConfig(t, `[[tunnel]]
name = "gre-six"
underlay = "eth1"
local = "198.51.100.1"
remote = "203.0.113.1"
address = ["10.0.0.1/30", "fd00::1/127"]
default_route = true
`)
	ns.up(cfg, "eth1")
	if got := strings.TrimSpace(ns.ip("-6", "route", "show", "table", polTable)); !strings.Contains(got, "default via fd00:: dev gre-six proto 176 metric 1") {
		t.Errorf("IPv6 table %s: %q", polTable, got)
	}
	rules := strings.Join(ns.ourRules(), "\n")
	for _, want := range []string{"-6 32700: from all lookup main suppress_prefixlength 0 proto", "-6 32701: not from all fwmark 0x4747 lookup " + polTable + " proto"} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	ns.mustRouteVia("IPv6 traffic", "2001:db8:99::1", "", "gre-six")
	ns.mustRouteVia("marked IPv6 traffic", "2001:db8:99::1", polMark, "eth1")
	if got := ns.mainDefault(); got != main {
		t.Errorf("up changed the main defaults: %q, was %q", got, main)
	}
	ns.down(cfg, "eth1")
	if got := ns.mainDefault(); got != main {
		t.Errorf("down changed the main defaults: %q, was %q", got, main)
	}
	ns.assertClean()
}
