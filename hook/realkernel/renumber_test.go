//go:build realkernel

package realkernel

import (
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// TestWatchRenumberingWithDefaultRoute: site1 has local = "auto" and
// default_route = true, and its underlay is renumbered the way a PPP
// reconnect or a DHCP client that lost its lease does it: the old address
// goes before the new one comes, and with it every IPv4 route through the
// underlay, the main default included. The tunnel's default is in
// gre-hook's table and its outer packets carry its mark, so they find the
// remote through whatever main default the DHCP client adds back (here
// with metric 1024, as systemd-networkd does); nothing needs re-pinning.
// Site2 names site1 as site1.test, and its watcher follows the name.
func TestWatchRenumberingWithDefaultRoute(t *testing.T) {
	t.Parallel()
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	hosts := "127.0.0.1 localhost\n"
	etcNetns(t, s.r2, "hosts", hosts+"198.51.100.1 site1.test\n")
	r1cfg := writeConfig(t, fixture.Config(fixture.Site2().Without("local").Set("default_route", "true").Routing()))
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
	s.r1.assertDefault("after up", "default via 198.51.100.254 dev eth1 proto static")
	w1 := startWatch(t, s.r1, r1cfg)
	startWatch(t, s.r2, r2cfg)
	w1.waitLog("gre-site2: following", 1, 10*time.Second)
	pingLANs(t, s, 10*time.Second)

	renumber := func(t *testing.T, old, addr, gw string) {
		idx := s.r1.linkIndex("gre-site2")
		start := time.Now()
		s.r1.ip("addr", "del", old, "dev", "eth1")
		s.r1.ip("addr", "add", addr, "dev", "eth1")
		time.Sleep(300 * time.Millisecond)
		s.r1.ip("route", "add", "default", "via", gw, "dev", "eth1", "metric", "1024", "proto", "dhcp")
		ip := strings.Split(addr, "/")[0]
		// The test's t, not the subtest's: a subtest's cleanup would
		// remove the file that ip netns exec bind-mounted for the watcher.
		etcNetns(s.t, s.r2, "hosts", hosts+ip+" site1.test\n")
		took := pingLANs(t, s, 30*time.Second)
		t.Logf("LAN-to-LAN ping works again %.2fs after the renumbering began (%.2fs after its last step)",
			time.Since(start).Seconds(), took.Seconds())
		if got := strings.TrimSpace(s.r1.ip("-4", "route", "get", "203.0.113.1", "mark", "0x4747")); !strings.Contains(got, "via "+gw+" dev eth1") {
			t.Errorf("site1's outer packets to 203.0.113.1 go: %s", got)
		}
		if i := s.r1.linkIndex("gre-site2"); i != idx {
			t.Errorf("gre-site2 was re-created: index %d -> %d", idx, i)
		}
		if l, _ := s.r1.link("gre-site2"); l.data("local") != ip {
			t.Errorf("gre-site2's local: %q, want %s", l.data("local"), ip)
		}
		if got := s.r1.tableRoutes(); !strings.Contains(got, "default via 10.0.0.2 dev gre-site2") {
			t.Errorf("table 18247 after renumbering: %q", got)
		}
	}
	t.Run("same subnet, new address", func(t *testing.T) {
		renumber(t, "198.51.100.1/24", "198.51.100.7/24", "198.51.100.254")
	})
	t.Run("new subnet, new gateway", func(t *testing.T) {
		s.inet.ip("addr", "add", "100.64.0.254/24", "dev", "to-r1")
		renumber(t, "198.51.100.7/24", "100.64.0.2/24", "100.64.0.254")
	})
	t.Run("down leaves the DHCP client's default route", func(t *testing.T) {
		before := s.r1.mainDefault()
		s.r1.down(r1cfg, "eth1")
		if got := s.r1.mainDefault(); got != before {
			t.Errorf("down changed the main default: %q, was %q", got, before)
		}
		s.r1.assertClean()
	})
}
