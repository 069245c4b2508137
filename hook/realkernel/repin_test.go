//go:build realkernel

package realkernel

import (
	"strings"
	"testing"
	"time"
)

// TestWatchRepinsAfterRenumbering: site1 has local = "auto" and
// default_route = true, and its underlay is renumbered the way a PPP
// reconnect or a DHCP client that lost its lease does it: the old address
// goes before the new one comes. With the underlay's last IPv4 address the
// kernel flushes every IPv4 route through it, the pin to the remote
// included. The watcher must pin the remote again through the underlay's
// new path, or the tunnel's outer packets follow the tunnel's own default
// route into itself.
//
// The DHCP client adds its default route back with a metric (1024, as
// systemd-networkd does; NetworkManager and dhcpcd also use one): at
// metric 0 the key is the tunnel's default route's, and ifupdown's
// dhclient-script, which adds it without a metric, fails there with "file
// exists". The route comes a moment after the address, as from a client.
// Site2 names site1 as site1.test, and its watcher follows the name.
func TestWatchRepinsAfterRenumbering(t *testing.T) {
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	hosts := "127.0.0.1 localhost\n"
	etcNetns(t, s.r2, "hosts", hosts+"198.51.100.1 site1.test\n")
	r1cfg := writeConfig(t, `
[[tunnel]]
name = "gre-site2"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
default_route = true
`)
	r2cfg := writeConfig(t, `
[[tunnel]]
name = "gre-site1"
underlay = "eth1"
remote = "site1.test"
resolve_interval = 1
address = ["10.0.0.2/30"]
[[tunnel.route]]
to = "192.168.1.0/24"
`)
	withCleanState(s.r1).up(r1cfg, "eth1")
	withCleanState(s.r2).up(r2cfg, "eth1")
	s.r1.assertDefault("after up", "default via 10.0.0.2 dev gre-site2 proto "+protoOurs)
	w1 := startWatch(t, s.r1, r1cfg)
	startWatch(t, s.r2, r2cfg)
	w1.waitLog("gre-site2: following", 1, 10*time.Second)
	pingLANs(t, s, 10*time.Second)

	pin := func() string { return strings.TrimSpace(s.r1.ip("-4", "route", "show", "203.0.113.1/32")) }
	renumber := func(t *testing.T, old, addr, gw string) {
		idx := s.r1.linkIndex("gre-site2")
		start := time.Now()
		s.r1.ip("addr", "del", old, "dev", "eth1")
		if p := pin(); p != "" {
			t.Fatalf("the kernel kept the pin with the underlay's last address gone: %s", p)
		}
		s.r1.ip("addr", "add", addr, "dev", "eth1")
		time.Sleep(300 * time.Millisecond)
		s.r1.ip("route", "add", "default", "via", gw, "dev", "eth1", "metric", "1024", "proto", "dhcp")
		ip := strings.Split(addr, "/")[0]
		// The test's t, not the subtest's: a subtest's cleanup would
		// remove the file that ip netns exec bind-mounted for the watcher.
		etcNetns(s.t, s.r2, "hosts", hosts+ip+" site1.test\n")
		took := pingLANs(t, s, 20*time.Second)
		t.Logf("LAN-to-LAN ping works again %.2fs after the renumbering began (%.2fs after its last step)",
			time.Since(start).Seconds(), took.Seconds())
		if p := pin(); !strings.Contains(p, "via "+gw+" dev eth1") {
			t.Errorf("pin after renumbering: %q, want via %s dev eth1\n%s", p, gw, strings.Join(s.r1.routes("-4"), "\n"))
		}
		if got := strings.TrimSpace(s.r1.ip("-4", "route", "get", "203.0.113.1")); !strings.Contains(got, "dev eth1") {
			t.Errorf("site1's outer packets to 203.0.113.1 go: %s", got)
		}
		if i := s.r1.linkIndex("gre-site2"); i != idx {
			t.Errorf("gre-site2 was re-created: index %d -> %d", idx, i)
		}
		if l, _ := s.r1.link("gre-site2"); l.data("local") != ip {
			t.Errorf("gre-site2's local: %q, want %s", l.data("local"), ip)
		}
		w1.waitLog("pinned again: ip route replace 203.0.113.1/32 via "+gw+" dev eth1", 1, 5*time.Second)
	}
	t.Run("same subnet, new address", func(t *testing.T) {
		renumber(t, "198.51.100.1/24", "198.51.100.7/24", "198.51.100.254")
	})
	t.Run("new subnet, new gateway", func(t *testing.T) {
		s.inet.ip("addr", "add", "100.64.0.254/24", "dev", "to-r1")
		renumber(t, "198.51.100.7/24", "100.64.0.2/24", "100.64.0.254")
	})
	t.Run("down leaves a default route", func(t *testing.T) {
		// The default route the tunnel replaced went through the old
		// subnet's gateway: down cannot put it back, and must say so.
		r := s.r1.gh(nil, "--config", r1cfg, "--iface", "eth1", "--phase", "down")
		t.Logf("down: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code == 0 || !strings.Contains(r.stderr, "ip route replace default via 198.51.100.254 dev eth1 proto 4: network is unreachable") {
			t.Errorf("down did not report the default route it could not put back")
		}
		if got := s.r1.defaultRoutes(); len(got) == 0 {
			t.Fatalf("no default route after down\n%s", strings.Join(s.r1.routes("-4"), "\n"))
		} else {
			t.Logf("default routes after down: %q", got)
		}
	})
}
