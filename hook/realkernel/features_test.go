//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

var site1 = fixture.Config(fixture.Site2())

func assertEq(t *testing.T, what string, got, want interface{}) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// TestUpIsIdempotentAndDownCleans brings the seed's tunnel up twice and
// down twice, and checks the kernel holds exactly one of each object in
// between and nothing after.
func TestUpIsIdempotentAndDownCleans(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1)

	first := ns.up(cfg, "eth1")
	if !strings.Contains(first.stderr, "ip tunnel add gre-site2 mode gre remote 203.0.113.1 local 198.51.100.1 ttl 255") {
		t.Errorf("up did not log the ip tunnel command:\n%s", first.stderr)
	}
	check := func() {
		t.Helper()
		l, ok := ns.link("gre-site2")
		if !ok {
			t.Fatal("no link gre-site2")
		}
		assertEq(t, "kind", l.Linkinfo.InfoKind, "gre")
		assertEq(t, "local", l.data("local"), "198.51.100.1")
		assertEq(t, "remote", l.data("remote"), "203.0.113.1")
		assertEq(t, "ttl", l.data("ttl"), "255")
		assertEq(t, "pmtudisc", l.data("pmtudisc"), "true")
		assertEq(t, "mtu", l.Mtu, 1476)
		assertEq(t, "alias", l.Ifalias, "gre-hook:eth1")
		if !l.has("UP") || !l.has("MULTICAST") {
			t.Errorf("flags %v lack UP or MULTICAST", l.Flags)
		}
		var addrs []string
		for _, a := range l.AddrInfo {
			if a.Scope != "link" {
				addrs = append(addrs, fmt.Sprintf("%s/%d brd %s", a.Local, a.Prefixlen, a.Broadcast))
			}
		}
		assertEq(t, "addresses", addrs, []string{"10.0.0.1/30 brd 10.0.0.3"})
		assertEq(t, "our routes", ns.ourRoutes(), []string{"192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176 metric 0 table main"})
		rules := ns.mangle("iptables")
		want := []string{
			"-N GRE-HOOK",
			"-A POSTROUTING -m comment --comment gre-hook -j GRE-HOOK",
			"-A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment gre-hook:eth1:gre-site2 -j TCPMSS --clamp-mss-to-pmtu",
		}
		var got []string
		for _, r := range rules {
			if strings.Contains(r, "GRE-HOOK") {
				// iptables-nft quotes the comment, iptables-legacy does not.
				got = append(got, strings.ReplaceAll(r, `"`, ""))
			}
		}
		assertEq(t, "mangle rules", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	check()
	second := ns.up(cfg, "eth1")
	if second.stderr != "" {
		t.Errorf("second up was not quiet:\n%s", second.stderr)
	}
	check()
	ns.down(cfg, "eth1")
	ns.assertClean()
	again := ns.down(cfg, "eth1")
	if again.stderr != "" {
		t.Errorf("second down was not quiet:\n%s", again.stderr)
	}
	ns.assertClean()
	if _, ok := ns.link("eth1"); !ok {
		t.Error("the underlay is gone")
	}
}

// TestModes makes one tunnel of each mode and checks the kind, the
// endpoints and the derived MTU the kernel reports.
func TestModes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode, local, remote, addr string
		mtu                       int
	}{
		{"gre", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", 1476},
		{"gretap", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", 1462},
		{"ip6gre", "2001:db8:1::1", "2001:db8:2::1", "10.0.0.1/30", 1448},
		{"ip6gretap", "2001:db8:1::1", "2001:db8:2::1", "10.0.0.1/30", 1434},
	}
	for _, c := range cases {
		c := c
		t.Run(c.mode, func(t *testing.T) {
			ns := newNS(t)
			ns.dummy("eth1", "", 1500)
			if strings.Contains(c.local, ":") {
				ns.ip("addr", "add", c.local+"/64", "dev", "eth1", "nodad")
			} else {
				ns.ip("addr", "add", c.local+"/24", "dev", "eth1")
			}
			cfg := writeConfig(t, fmt.Sprintf(`
[[tunnel]]
name = "t-%s"
underlay = "eth1"
mode = %q
remote = %q
address = [%q]
`, c.mode, c.mode, c.remote, c.addr))
			ns.up(cfg, "eth1")
			l, ok := ns.link("t-" + c.mode)
			if !ok {
				t.Fatal("no tunnel link")
			}
			assertEq(t, "kind", l.Linkinfo.InfoKind, c.mode)
			assertEq(t, "local (automatic)", l.data("local"), c.local)
			assertEq(t, "remote", l.data("remote"), c.remote)
			assertEq(t, "mtu", l.Mtu, c.mtu)
			ns.down(cfg, "eth1")
			ns.assertClean()
		})
	}
}

// TestKeys checks key and ikey/okey reach the kernel, gre's and gretap's,
// and that the output key shrinks the derived MTU.
func TestKeys(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, `
[[tunnel]]
name = "k1"
underlay = "eth1"
remote = "203.0.113.1"
key = 42
[[tunnel]]
name = "k2"
underlay = "eth1"
remote = "203.0.113.1"
ikey = 7
okey = 8
[[tunnel]]
name = "k3"
underlay = "eth1"
mode = "gretap"
remote = "203.0.113.2"
ikey = 7
okey = 8
`)
	ns.up(cfg, "eth1")
	k1, _ := ns.link("k1")
	k2, _ := ns.link("k2")
	k3, _ := ns.link("k3")
	assertEq(t, "k3 ikey", k3.data("ikey"), "0.0.0.7")
	assertEq(t, "k3 okey", k3.data("okey"), "0.0.0.8")
	// gre-hook reads the keys back as the kernel has them: a second up
	// has nothing to do (netlink's parser swaps a tap's keys).
	if r := ns.up(cfg, "eth1"); r.stderr != "" {
		t.Errorf("a second up changed something:\n%s", r.stderr)
	}
	assertEq(t, "k1 ikey", k1.data("ikey"), "0.0.0.42")
	assertEq(t, "k1 okey", k1.data("okey"), "0.0.0.42")
	assertEq(t, "k2 ikey", k2.data("ikey"), "0.0.0.7")
	assertEq(t, "k2 okey", k2.data("okey"), "0.0.0.8")
	assertEq(t, "k1 mtu", k1.Mtu, 1472)
	ns.down(cfg, "eth1")
	ns.assertClean()
}

// TestMTU checks an explicit MTU, and that editing it is applied in place
// by the next up.
func TestMTU(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 9000)
	cfg := writeConfig(t, site1)
	ns.up(cfg, "eth1")
	l, _ := ns.link("gre-site2")
	assertEq(t, "mtu derived from a 9000 underlay", l.Mtu, 8976)
	// The config is edited in place: gre-hook remembers which config
	// brought the tunnels up, and leaves them alone for any other.
	if err := os.WriteFile(cfg, []byte(fixture.Config(fixture.Site2().Set("mtu", "1400"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ns.up(cfg, "eth1")
	if !strings.Contains(r.stderr, "ip link set gre-site2 mtu 1400") {
		t.Errorf("mtu change not logged:\n%s", r.stderr)
	}
	l, _ = ns.link("gre-site2")
	assertEq(t, "explicit mtu", l.Mtu, 1400)
	ns.down(cfg, "eth1")
	ns.assertClean()
}

// TestIPv6Addresses gives a GRE tunnel both an IPv4 and an IPv6 address
// and an IPv6 route; it must get ip6tables clamping too.
func TestIPv6Addresses(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, `
[[tunnel]]
name = "dual"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30", "fd00:1::1/127"]
[[tunnel.route]]
to = "fd00:2::/64"
[[tunnel.route]]
to = "192.168.2.0/24"
metric = 10
table = 100
`)
	ns.up(cfg, "eth1")
	l, _ := ns.link("dual")
	var v6 []string
	for _, a := range l.AddrInfo {
		if a.Family == "inet6" && a.Scope == "global" {
			v6 = append(v6, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
		}
	}
	assertEq(t, "IPv6 addresses", v6, []string{"fd00:1::1/127"})
	routes := strings.Join(ns.ourRoutes(), "\n")
	for _, want := range []string{
		"192.168.2.0/24 via 10.0.0.2 dev dual proto 176 metric 10 table 100",
		"fd00:2::/64 via fd00:1:: dev dual proto 176",
	} {
		if !strings.Contains(routes, want) {
			t.Errorf("route %q missing from:\n%s", want, routes)
		}
	}
	if r := strings.ReplaceAll(strings.Join(ns.mangle("ip6tables"), "\n"), `"`, ""); !strings.Contains(r, "--comment gre-hook:eth1:dual -j TCPMSS --clamp-mss-to-pmtu") {
		t.Errorf("no ip6tables clamp rule:\n%s", r)
	}
	ns.down(cfg, "eth1")
	ns.assertClean()
}

// TestDefaultRouteTakeover: default_route puts the tunnel's default into
// gre-hook's table (18247) with the two rules; the main table is left as
// it was (no pin, the same default), the remote is still reached through
// the underlay by the tunnel's marked packets, and down leaves the routes
// exactly as before.
func TestDefaultRouteTakeover(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	ns.ip("route", "add", "default", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
	before := ns.routes("-4")
	var mainBefore []string
	for _, r := range before {
		mainBefore = append(mainBefore, r)
	}
	cfg := writeConfig(t, fixture.Config(fixture.Site2().Set("default_route", "true")))
	ns.up(cfg, "eth1")
	routes := strings.Join(ns.routes("-4"), "\n")
	if !strings.Contains(routes, "default via 10.0.0.2 dev gre-site2 proto 176 metric 1 table 18247") {
		t.Errorf("no default via the tunnel in table 18247:\n%s", routes)
	}
	for _, r := range mainBefore {
		if !strings.Contains(routes, r) {
			t.Errorf("route %q of the main table is gone:\n%s", r, routes)
		}
	}
	if strings.Contains(routes, "203.0.113.1 via") {
		t.Errorf("a pin route:\n%s", routes)
	}
	if got := ns.ip("route", "get", "203.0.113.1", "mark", "0x4747"); !strings.Contains(got, "dev eth1") {
		t.Errorf("the tunnel's packets route into the tunnel: %s", got)
	}
	if got := ns.ip("route", "get", "192.0.2.1"); !strings.Contains(got, "dev gre-site2") {
		t.Errorf("other traffic does not take the tunnel: %s", got)
	}
	ns.up(cfg, "eth1")
	ns.down(cfg, "eth1")
	assertEq(t, "routes after down", strings.Join(ns.routes("-4"), "\n"), strings.Join(before, "\n"))
	ns.assertClean()
}

// TestForeignLinkUntouched: a link that gre-hook did not create, with the
// tunnel's name, makes up fail without touching it, and down leaves it.
func TestForeignLinkUntouched(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	ns.ip("link", "add", "gre-site2", "type", "gre", "local", "198.51.100.1", "remote", "192.0.2.9", "ttl", "64")
	before := ns.links()["gre-site2"]
	cfg := writeConfig(t, site1)
	r := ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up")
	if r.code == 0 {
		t.Fatal("up succeeded over a foreign link")
	}
	if !strings.Contains(r.stderr, "gre-site2 already exists") || !strings.Contains(r.stderr, "did not create it") {
		t.Errorf("error does not name the foreign link:\n%s", r.stderr)
	}
	ns.down(cfg, "eth1")
	after, ok := ns.links()["gre-site2"]
	if !ok {
		t.Fatal("down deleted the foreign link")
	}
	assertEq(t, "foreign remote", after.data("remote"), before.data("remote"))
	assertEq(t, "foreign ttl", after.data("ttl"), "64")
	assertEq(t, "our routes", len(ns.ourRoutes()), 0)
	if rules := strings.Join(ns.mangle("iptables"), "\n"); strings.Contains(rules, "GRE-HOOK") {
		t.Errorf("rules made despite the refusal:\n%s", rules)
	}
}

// TestRollbackWhenAStepFails makes the last step (the iptables write) fail
// and checks that the links, addresses and routes made before it are gone.
func TestRollbackWhenAStepFails(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1)
	// An iptables-restore that fails.
	path := pathWith(t, map[string]string{"ip": "ip", "modprobe": "modprobe", "iptables": "iptables",
		"ip6tables": "ip6tables", "ip6tables-restore": "ip6tables-restore"},
		map[string]string{"iptables-restore": "#!/bin/sh\necho 'iptables-restore: injected failure' >&2\nexit 1\n"})
	r := ns.gh([]string{path}, "--config", cfg, "--iface", "eth1", "--phase", "up")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "injected failure") || !strings.Contains(r.stderr, "rolled back") {
		t.Errorf("error does not say what failed and that it rolled back:\n%s", r.stderr)
	}
	ns.assertClean()
	// And an up_command that fails rolls back the rules too.
	cfg2 := writeConfig(t, fixture.Config(fixture.Site2().Set("up_command", `["/bin/false"]`)))
	r = ns.gh(nil, "--config", cfg2, "--iface", "eth1", "--phase", "up")
	if r.code != 1 || !strings.Contains(r.stderr, "up_command") {
		t.Fatalf("exit %d, want 1 naming up_command\n%s", r.code, r.stderr)
	}
	ns.assertClean()
}

// TestUpDownCommands checks up_command runs after up and down_command
// before down, without a shell, with the tunnel in the environment, even
// when the config is gone by the time of down.
func TestUpDownCommands(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	out := t.TempDir()
	os.Chmod(out, 0o755)
	log := filepath.Join(out, "log")
	script := filepath.Join(out, "notify")
	// The script records its argument, environment and whether the link is
	// there and up when it runs.
	os.WriteFile(script, []byte(`#!/bin/sh
state=$(cat /sys/class/net/$GRE_HOOK_TUNNEL/operstate 2>/dev/null || echo absent)
echo "$1 tunnel=$GRE_HOOK_TUNNEL underlay=$GRE_HOOK_UNDERLAY phase=$GRE_HOOK_PHASE link=$state" >> `+log+"\n"), 0o755)
	cfg := writeConfig(t, fixture.Config(fixture.Site2().Set("up_command", fmt.Sprintf(`[%q, "a b"]`, script)).
		Set("down_command", fmt.Sprintf(`[%q, "down"]`, script))))
	ns.up(cfg, "eth1")
	os.Remove(cfg)
	ns.down(cfg, "eth1")
	got, _ := os.ReadFile(log)
	want := "a b tunnel=gre-site2 underlay=eth1 phase=up link=unknown\ndown tunnel=gre-site2 underlay=eth1 phase=down link=unknown\n"
	assertEq(t, "command log", string(got), want)
	ns.assertClean()
}
