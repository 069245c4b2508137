//go:build realkernel

package realkernel

import (
	"strings"
	"testing"
)

// What a newcomer meets, on a real kernel: the failures that check, a
// dry run and status foresee, and that the real run then meets too.
func TestForeseenFailures(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	tunnel := func(local string) string {
		return "[[tunnel]]\nname = \"gre-t\"\nunderlay = \"eth1\"\nlocal = \"" + local + "\"\nremote = \"203.0.113.1\"\naddress = [\"10.0.0.1/30\"]\n"
	}

	// A dry run with the underlay down warns, prints the plan and changes
	// nothing; the real up then fails as it said.
	cfg := writeConfig(t, tunnel("auto"))
	ns.ip("link", "set", "eth1", "down")
	before := ns.snapshot()
	r := ns.must(ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run"))
	if want := "gre-hook: warning: underlay eth1 is down, so a real up would fail now"; !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "ip tunnel add gre-t") {
		t.Errorf("dry run with eth1 down:\n%s\nwant it to start %q and plan the tunnel", r.stderr, want)
	}
	ns.assertUnchanged("a dry run with the underlay down", before)
	ns.upRefused(nil, cfg, "up with the underlay down", 1, "the underlay is down; bring it up first")
	ns.ip("link", "set", "eth1", "up")

	// With GRE in the kernel, status foresees no module trouble and
	// prints the commands that would fix the drift.
	r = ns.gh(nil, "status", "--config", cfg)
	if r.code != 3 || !strings.Contains(r.stdout, "eth1: up would run:\n  ip tunnel add gre-t") || strings.Contains(r.stdout, "GRE support") {
		t.Errorf("status before up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// local = "auto" never picks the remote: with the remote as the
	// underlay's only address, up refuses and makes nothing.
	ns.ip("addr", "flush", "dev", "eth1")
	ns.ip("addr", "add", "203.0.113.1/24", "dev", "eth1")
	ns.upRefused(nil, cfg, "up with the remote as the only local", 1,
		`tunnel "gre-t": local is automatic, and underlay eth1's only IPv4 address 203.0.113.1 is the remote itself`)
	ns.ip("addr", "flush", "dev", "eth1")
	ns.ip("addr", "add", "198.51.100.1/24", "dev", "eth1")

	// A literal local that is not on this host: check warns (exit 0),
	// --strict fails, up warns and the kernel has the tunnel from it, and
	// status calls it a problem.
	cfg = writeConfig(t, tunnel("198.51.100.7"))
	r = ns.must(ns.gh(nil, "check", "--config", cfg))
	if want := "gre-hook: " + cfg + ":4:1: warning: tunnel \"gre-t\": local: 198.51.100.7 is not an address of this host (up fails until it is)\n"; r.stderr != want {
		t.Errorf("check:\n%s\nwant:\n%s", r.stderr, want)
	}
	expectFail(t, "check --strict", ns.gh(nil, "check", "--strict", "--config", cfg), 2, "1 warning(s), which --strict counts as errors")
	r = ns.up(cfg, "eth1")
	if want := "gre-hook: warning: tunnel \"gre-t\": local 198.51.100.7 is not an address of this host"; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("up:\n%s\nwant it to start %q", r.stderr, want)
	}
	if l, ok := ns.link("gre-t"); !ok || l.data("local") != "198.51.100.7" {
		t.Errorf("gre-t after up: %+v (present %v), want local 198.51.100.7", l.Linkinfo, ok)
	}
	r = ns.gh(nil, "status", "--config", cfg)
	if r.code != 3 || !strings.Contains(r.stdout, "gre-t on eth1: drift\n  - local 198.51.100.7 is not an address of this host") {
		t.Errorf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ns.down(cfg, "eth1")

	// Two tunnels on one inner subnet: check names both places, and up
	// refuses with the same words and makes nothing.
	two := tunnel("198.51.100.1") + strings.Replace(strings.Replace(tunnel("198.51.100.1"), "gre-t", "gre-u", 1), "203.0.113.1", "203.0.113.2", 1)
	cfg = writeConfig(t, two)
	msg := "gre-hook: " + cfg + `:12:1: tunnel "gre-u": address: 10.0.0.1 is already the address of tunnel "gre-t" (` + cfg + ":6:1)"
	expectFail(t, "check of two tunnels on one address", ns.gh(nil, "check", "--config", cfg), 2, msg)
	ns.upRefused(nil, cfg, "up of two tunnels on one address", 2, msg)
	ns.assertClean()
}
