//go:build realkernel

package realkernel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The deployment tests: situations met on real routers (dual-stack
// underlays, two default_route tunnels, an admin's hand on the default
// route, a down racing an up, a record gre-hook cannot read, a rollback
// that cannot undo everything, the main table named by number). Each
// checks what the kernel holds afterwards.

// Protocol names of the routes these tests expect, as ip prints them when
// /etc/iproute2 has no name for 176.
const (
	protoOurs   = "176"
	origDefault = "default via 198.51.100.254 dev eth1 proto static"
)

// defaultRoutes returns the IPv4 default routes of the main table as
// "default via GW dev DEV proto P [metric M]", from ip route show default.
func (n *netns) defaultRoutes() []string {
	n.t.Helper()
	out := n.ip("-4", "-j", "route", "show", "default")
	var rs []routeInfo
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		n.t.Fatalf("parsing ip -j route show default: %v\n%s", err, out)
	}
	var lines []string
	for _, r := range rs {
		proto := r.Protocol
		switch proto {
		case "gre-hook":
			proto = protoOurs
		case "":
			// ip leaves out the default protocol, boot.
			proto = "boot"
		}
		s := "default"
		if r.Gateway != "" {
			s += " via " + r.Gateway
		}
		s += " dev " + r.Dev + " proto " + proto
		if r.Metric != 0 {
			s += fmt.Sprintf(" metric %d", r.Metric)
		}
		lines = append(lines, s)
	}
	return lines
}

// assertDefault requires exactly one default route, want.
func (n *netns) assertDefault(what, want string) {
	n.t.Helper()
	if got := n.defaultRoutes(); len(got) != 1 || got[0] != want {
		n.t.Fatalf("%s: default routes are %q, want exactly one: %q\nall routes:\n%s", what, got, want, strings.Join(n.routes("-4"), "\n"))
	}
}

// withDefault makes eth1 (198.51.100.1/24) with the router's own default
// route, origDefault, in a namespace whose state directory is its own.
func withDefault(t *testing.T) *netns {
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	ns.ip("route", "add", "default", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
	return ns
}

// TestDeployDualStackUnderlay guards the underlay with an inet and an
// inet6 stanza. ifupdown runs post-up once per stanza, and only the inet
// stanza names the config (gre-hook-config); the inet6 run reads the
// default config, which is absent here and so lists no tunnels. That run
// must not take the inet run's tunnel for a stale one and delete it.
func TestDeployDualStackUnderlay(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	site1cfg := filepath.Join(root, "configs", "site1.toml")
	s := newTwoSites(t, site1cfg, filepath.Join(root, "configs", "site2.toml"), true)
	for _, r := range []*netns{s.r1, s.r2} {
		dir := r.stateDir()
		os.RemoveAll(dir)
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	// dad-attempts 0: ifup need not wait for duplicate address detection.
	ifs := fmt.Sprintf(`iface eth1 inet static
    address 198.51.100.1/24
    gateway 198.51.100.254
    gre-hook-config %s
    post-up %s
    pre-down %s

iface eth1 inet6 static
    address 2001:db8:1::1/64
    dad-attempts 0
    post-up %s
    pre-down %s
`, site1cfg, bin, bin, bin, bin)
	if err := os.WriteFile(s.r1ifs, []byte(ifs), 0o644); err != nil {
		t.Fatal(err)
	}

	out := s.ifupdown(s.r1, "ifup", s.r1ifs, s.r1state)
	s.ifupdown(s.r2, "ifup", s.r2ifs, s.r2state)
	// Both stanzas ran: the IPv6 address is there.
	if !strings.Contains(s.r1.ip("-6", "addr", "show", "dev", "eth1"), "2001:db8:1::1/64") {
		t.Fatalf("ifup did not configure the inet6 stanza of eth1:\n%s", out)
	}
	l, ok := s.r1.link("gre-site2")
	if !ok {
		t.Fatalf("after ifup the tunnel gre-site2 is gone; gre-hook's objects left: %q\nifup said:\n%s", s.r1.greHookLeft(), out)
	}
	assertEq(t, "alias", l.Ifalias, "gre-hook:eth1")
	if !l.has("UP") {
		t.Errorf("gre-site2 is not up: %v", l.Flags)
	}
	var addrs []string
	for _, a := range l.AddrInfo {
		if a.Family == "inet" {
			addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
		}
	}
	assertEq(t, "gre-site2 addresses", addrs, []string{"10.0.0.1/30"})
	assertEq(t, "r1 routes of gre-hook's", s.r1.ourRoutes(), []string{"192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176 metric 0 table main"})
	if rules := strings.Join(s.r1.mangle("iptables"), "\n"); !strings.Contains(rules, "gre-hook:eth1:gre-site2") {
		t.Errorf("no MSS rule for gre-site2:\n%s", rules)
	}
	if out, err := s.h1.try("ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.2.10"); err != nil {
		t.Errorf("ping h1 -> h2 through the tunnel failed: %v\n%s", err, out)
	}

	s.down()
	s.checkClean(t)
}

// twoDefaults is tunnel A on eth1 and tunnel B on eth2, both taking the
// default route. B's remote is on eth2's own subnet, so its pin goes
// through eth2's connected route and not through A.
const twoDefaults = `
[[tunnel]]
name = "gre-a"
underlay = "eth1"
remote = "203.0.113.1"
address = ["10.0.0.1/30"]
default_route = true
mss = 1360

[[tunnel]]
name = "gre-b"
underlay = "eth2"
remote = "192.0.2.77"
address = ["10.0.1.1/30"]
default_route = true
`

// TestDeployTwoDefaultRoutes guards two default_route tunnels on two
// underlays: two routes in gre-hook's table, by metric in config order;
// when either goes down the other carries the traffic, and the main
// table's default, never touched, once both are down.
func TestDeployTwoDefaultRoutes(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (ns *netns, cfg string, before []string) {
		ns = withDefault(t)
		ns.dummy("eth2", "192.0.2.1/24", 1500)
		before = ns.routes("-4")
		cfg = writeConfig(t, twoDefaults)
		ns.up(cfg, "eth1")
		ns.up(cfg, "eth2")
		ns.assertDefault("up eth1, up eth2", origDefault)
		ns.mustRouteVia("up eth1, up eth2", "8.8.8.8", "", "gre-a")
		if got := ns.tableRoutes(); !strings.Contains(got, "dev gre-a proto 176 metric 1") || !strings.Contains(got, "dev gre-b proto 176 metric 2") {
			t.Fatalf("table 18247: %q", got)
		}
		return ns, cfg, before
	}
	t.Run("eth2 down first", func(t *testing.T) {
		t.Parallel()
		ns, cfg, before := setup(t)
		ns.down(cfg, "eth2")
		ns.mustRouteVia("down eth2", "8.8.8.8", "", "gre-a")
		ns.mustRouteVia("gre-a's outer packets", "203.0.113.1", "0x4747", "eth1")
		ns.down(cfg, "eth1")
		ns.assertDefault("then down eth1", origDefault)
		assertEq(t, "routes after both downs", strings.Join(ns.routes("-4"), "\n"), strings.Join(before, "\n"))
		ns.assertNothingLeft("both down")
	})
	t.Run("eth1 down first", func(t *testing.T) {
		t.Parallel()
		ns, cfg, before := setup(t)
		ns.down(cfg, "eth1")
		ns.mustRouteVia("down eth1", "8.8.8.8", "", "gre-b")
		if _, ok := ns.link("gre-a"); ok {
			t.Error("down eth1 left gre-a")
		}
		ns.down(cfg, "eth2")
		ns.assertDefault("then down eth2", origDefault)
		assertEq(t, "routes after both downs", strings.Join(ns.routes("-4"), "\n"), strings.Join(before, "\n"))
		ns.assertNothingLeft("both down")
	})
}

// TestDeployAdminChangedDefault guards an admin's default route: the
// admin's replace of the main default is left alone by up and down.
func TestDeployAdminChangedDefault(t *testing.T) {
	t.Parallel()
	ns := withDefault(t)
	cfg := writeConfig(t, siteDefault)
	ns.up(cfg, "eth1")
	ns.assertDefault("up", origDefault)
	// ip route replace without proto gives proto boot.
	ns.ip("route", "replace", "default", "via", "198.51.100.253", "dev", "eth1")
	ns.up(cfg, "eth1")
	ns.assertDefault("up after the admin's replace", "default via 198.51.100.253 dev eth1 proto boot")
	ns.down(cfg, "eth1")
	ns.assertDefault("down after the admin's replace", "default via 198.51.100.253 dev eth1 proto boot")
	ns.assertNothingLeft("down")
}

// TestDeployDownReadsRecordUnderLock guards a down that waits for the lock
// while an up runs: it must act on the record as that up left it, not as
// it was before. The race is made deterministic: the test holds the lock,
// starts the down, and while the down waits makes the kernel and the
// record what an up with default_route leaves; then it lets go.
func TestDeployDownReadsRecordUnderLock(t *testing.T) {
	t.Parallel()
	ns := withDefault(t)
	before := ns.routes("-4")
	cfg := writeConfig(t, site1)
	ns.up(cfg, "eth1")

	// The record an up with default_route writes, from a twin router
	// where that up really ran: same tunnel, same underlay, same routes.
	twin := withDefault(t)
	twin.up(writeConfig(t, siteDefault), "eth1")
	rec, err := os.ReadFile(filepath.Join(twin.stateDir(), "eth1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec), `"table": 18247`) {
		t.Fatalf("the twin's record does not list the default route in gre-hook's table:\n%s", rec)
	}

	dir := ns.stateDir()
	lock := filepath.Join(dir, "lock")
	release := holdLock(t, lock)
	down := ns.start([]string{"GRE_HOOK_LOCK_WAIT=600"}, "--config", cfg, "--iface", "eth1", "--phase", "down")
	// ip netns exec runs gre-hook in its own place, so this pid is
	// gre-hook's. Once it has the lock file open it is waiting on it.
	waitOpen(t, down.cmd.Process.Pid, lock, 60*time.Second)

	// Meanwhile an up with default_route = true.
	if err := os.WriteFile(cfg, []byte(siteDefault), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.ip("route", "replace", "default", "via", "10.0.0.2", "dev", "gre-site2", "table", "18247", "metric", "1", "proto", protoOurs)
	ns.ip("rule", "add", "priority", "32700", "lookup", "main", "suppress_prefixlength", "0", "proto", protoOurs)
	ns.ip("rule", "add", "priority", "32701", "not", "fwmark", "0x4747", "lookup", "18247", "proto", protoOurs)
	if err := os.WriteFile(filepath.Join(dir, "eth1.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	release()

	r := down.wait()
	if r.code != 0 {
		t.Fatalf("down exited %d\n%s", r.code, r.stderr)
	}
	ns.assertDefault("down that waited for the lock", origDefault)
	assertEq(t, "routes after down", strings.Join(ns.routes("-4"), "\n"), strings.Join(before, "\n"))
	ns.assertNothingLeft("down")
}

// waitOpen waits until process pid has path open.
func waitOpen(t *testing.T, pid int, path string, timeout time.Duration) {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	deadline := time.Now().Add(timeout)
	for {
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && target == path {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gre-hook (pid %d) did not open %s within %s", pid, path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upThenTamper brings up siteDefault on eth1 over the router's own default
// route, then rewrites its record with tamper. It returns the namespace,
// the config and the IPv4 routes from before the up.
func upThenTamper(t *testing.T, tamper func(t *testing.T, rec []byte) []byte) (*netns, string, []string) {
	ns := withDefault(t)
	before := ns.routes("-4")
	cfg := writeConfig(t, siteDefault)
	ns.up(cfg, "eth1")
	ns.assertDefault("up", origDefault)
	path := filepath.Join(ns.stateDir(), "eth1.json")
	rec, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, tamper(t, rec), 0o600); err != nil {
		t.Fatal(err)
	}
	return ns, cfg, before
}

// TestDeployNewerRecord guards a record written by a newer gre-hook
// (version 2, with fields this one does not know): gc must not take its
// tunnel for an unexplained leftover, up must leave it be, and down must
// still take down what the record lists, the rules included.
func TestDeployNewerRecord(t *testing.T) {
	t.Parallel()
	newer := func(t *testing.T, rec []byte) []byte {
		var m map[string]interface{}
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Fatalf("record: %v\n%s", err, rec)
		}
		m["version"] = 2
		m["written_by"] = "gre-hook 2.0"
		tunnels, _ := m["tunnels"].([]interface{})
		if len(tunnels) != 1 {
			t.Fatalf("record lists %d tunnels, want 1:\n%s", len(tunnels), rec)
		}
		tunnels[0].(map[string]interface{})["keepalive"] = map[string]interface{}{"interval": 10, "retries": 3}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return append(out, '\n')
	}
	t.Run("gc", func(t *testing.T) {
		t.Parallel()
		ns, cfg, _ := upThenTamper(t, newer)
		before := ns.snapshot()
		r := ns.gh(nil, "gc", "--config", cfg)
		t.Logf("gc exited %d", r.code)
		ns.assertUnchanged("gc over a newer record", before)
	})
	t.Run("up", func(t *testing.T) {
		t.Parallel()
		ns, cfg, _ := upThenTamper(t, newer)
		before := ns.snapshot()
		ns.up(cfg, "eth1")
		ns.assertUnchanged("a second up over a newer record", before)
	})
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		ns, cfg, routes := upThenTamper(t, newer)
		ns.down(cfg, "eth1")
		ns.assertDefault("down over a newer record", origDefault)
		assertEq(t, "routes after down", strings.Join(ns.routes("-4"), "\n"), strings.Join(routes, "\n"))
		ns.assertClean()
	})
}

// TestDeployCorruptRecord guards a record that cannot be parsed at all.
// A record may know a main default route to put back (the previous
// release's), so gc, up and down must all refuse (non-zero exit) and
// change nothing, rather than tear the tunnel down on a guess.
func TestDeployCorruptRecord(t *testing.T) {
	t.Parallel()
	garbage := func(t *testing.T, rec []byte) []byte {
		return []byte("\x00\x17\xff{\"version\": 1, \"underl\x00ay\xfe garbage")
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"gc", []string{"gc"}},
		{"up", []string{"--iface", "eth1", "--phase", "up"}},
		{"down", []string{"--iface", "eth1", "--phase", "down"}},
	} {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns, cfg, _ := upThenTamper(t, garbage)
			before := ns.snapshot()
			r := ns.gh(nil, append(c.args, "--config", cfg)...)
			if r.code == 0 {
				t.Errorf("%s over a corrupt record exited 0\n%s", c.name, r.stderr)
			}
			ns.assertUnchanged(c.name+" over a corrupt record", before)
		})
	}
}

// TestDeployRollbackLeavesTheMainDefault: an up whose up_command fails
// after it flushed the underlay's address (which takes every route through
// eth1 with it, the main default included) rolls back its own routes and
// rules, and never touches the main table; the admin's repair of the
// underlay is then all that is needed.
func TestDeployRollbackLeavesTheMainDefault(t *testing.T) {
	t.Parallel()
	ns := withDefault(t)
	before := ns.routes("-4")
	cfg := writeConfig(t, strings.Replace(siteDefault, `address = `,
		`up_command = ["/bin/sh", "-c", "ip addr flush dev eth1; exit 1"]`+"\naddress = ", 1))
	r := ns.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up")
	if r.code == 0 {
		t.Fatalf("up with a failing up_command exited 0\n%s", r.stderr)
	}
	ns.assertNothingLeft("the rollback")
	ns.ip("addr", "add", "198.51.100.1/24", "dev", "eth1")
	ns.ip("route", "add", "default", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
	assertEq(t, "routes after the repair", strings.Join(ns.routes("-4"), "\n"), strings.Join(before, "\n"))
}

// TestDeployRouteInMainTableByNumber guards `table = 254` in a route: 254
// is the main table, which the kernel also reports as main. A second up
// must see the route it made as the one it wants: no change, no output,
// and the route still there.
func TestDeployRouteInMainTableByNumber(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1+"table = 254\n")
	want := []string{"192.168.2.0/24 via 10.0.0.2 dev gre-site2 proto 176 metric 0 table main"}
	ns.up(cfg, "eth1")
	assertEq(t, "routes of gre-hook's after up", ns.ourRoutes(), want)
	second := ns.up(cfg, "eth1")
	assertEq(t, "routes of gre-hook's after a second up", ns.ourRoutes(), want)
	if second.stderr != "" {
		t.Errorf("the second up changed something or was not quiet:\n%s", second.stderr)
	}
	ns.down(cfg, "eth1")
	ns.assertNothingLeft("down")
}
