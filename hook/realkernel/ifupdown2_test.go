//go:build realkernel

package realkernel

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// The ifupdown2 tier: the two-site scenario driven by Debian's ifupdown2
// (the Proxmox default) instead of ifupdown. ifupdown2 conflicts with
// ifupdown, so these tests run only in a root where it has replaced
// ifupdown: scripts/test runs them in a VM of their own, under
// `scripts/ifupdown2 run`, which swaps the packages in the VM's throwaway
// overlay. Anywhere else they fail.

// bootPATH is the PATH of systemd's networking.service, the only variable
// ifup gets at boot. It also keeps pyenv and the like away from ifupdown2's
// "#!/usr/bin/env python3".
const bootPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var ifupdown2Root struct {
	once     sync.Once
	stateDir string // ifupdown2's state_dir
	err      error
}

// requireIfupdown2 fails the test unless ifupdown2 is the installed
// ifupdown of this root. It returns ifupdown2's state directory.
func requireIfupdown2(t *testing.T) string {
	t.Helper()
	ifupdown2Root.once.Do(func() {
		ifupdown2Root.stateDir, ifupdown2Root.err = probeIfupdown2()
	})
	if ifupdown2Root.err != nil {
		t.Fatalf("cannot run the ifupdown2 tests: %v", ifupdown2Root.err)
	}
	return ifupdown2Root.stateDir
}

func probeIfupdown2() (string, error) {
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "ifupdown2").Output()
	if status := strings.TrimSpace(string(out)); !strings.HasPrefix(status, "ii") {
		if status == "" {
			status = "not installed"
		}
		return "", fmt.Errorf("ifupdown2 is not the installed ifupdown in this root (dpkg: ifupdown2 %s). "+
			"It conflicts with ifupdown, so these tests run only in scripts/vm's throwaway guest, "+
			"under `scripts/ifupdown2 run`, as scripts/test runs them", status)
	}
	for _, tool := range []string{"ifup", "ifdown", "ifreload"} {
		p, err := filepath.EvalSymlinks("/sbin/" + tool)
		if err != nil || !strings.HasPrefix(p, "/usr/share/ifupdown2/") {
			return "", fmt.Errorf("/sbin/%s is %q (%v), not ifupdown2's", tool, p, err)
		}
	}
	stateDir, err := ifupdown2StateDir("/etc/network/ifupdown2/ifupdown2.conf")
	if err != nil {
		return "", err
	}
	// The mount points for each router's own copies (see i2router). The
	// hook directories belong to ifupdown, which ifupdown2 replaced, and
	// ifupdown2 makes the other two on its first run.
	for _, d := range []string{"/etc/network/if-up.d", "/etc/network/if-down.d", "/run/network", stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat("/etc/network/interfaces"); err != nil {
		return "", err
	}
	return stateDir, nil
}

// ifupdown2StateDir reads state_dir from ifupdown2.conf: where ifupdown2
// keeps the state file (ifstatenew) that ifdown and ifreload read.
func ifupdown2StateDir(conf string) (string, error) {
	dir := "/var/tmp/network" // its default
	f, err := os.Open(conf)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.TrimSpace(k) == "state_dir" && strings.TrimSpace(v) != "" {
			dir = strings.TrimSpace(v)
		}
	}
	return filepath.Clean(dir), sc.Err()
}

// i2router is one router's ifupdown2. A machine has one
// /etc/network/interfaces, one pair of hook directories and one ifupdown2
// state: /run/network (its lock) and the state_dir of ifupdown2.conf (what
// is up). The routers of a test share this root, so each ifupdown2 run
// gets the router's own copies, bind-mounted over those paths inside the
// mount namespace that `ip netns exec` makes for it. ifreload has no -i,
// so the interfaces file is bound the same way.
type i2router struct {
	t        *testing.T
	ns       *netns
	dir      string
	stateDir string
}

func newI2Router(t *testing.T, ns *netns, stateDir string) *i2router {
	t.Helper()
	r := &i2router{t: t, ns: ns, dir: t.TempDir(), stateDir: stateDir}
	os.Chmod(r.dir, 0o755)
	for _, d := range []string{"if-up.d", "if-down.d", "run", "state"} {
		if err := os.Mkdir(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.setInterfaces("")
	// gre-hook's own records for this namespace: a namespace of an earlier
	// test may have had the same inode.
	gh := ns.stateDir()
	os.RemoveAll(gh)
	t.Cleanup(func() { os.RemoveAll(gh) })
	return r
}

func (r *i2router) path(name string) string { return filepath.Join(r.dir, name) }

func (r *i2router) setInterfaces(body string) {
	r.t.Helper()
	if err := os.WriteFile(r.path("interfaces"), []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// installHooks puts gre-hook in the router's if-up.d and if-down.d, as the
// Debian package does (there: symlinks to /usr/sbin/gre-hook).
func (r *i2router) installHooks() {
	r.t.Helper()
	for _, d := range []string{"if-up.d", "if-down.d"} {
		if err := os.Symlink(bin, filepath.Join(r.path(d), "gre-hook")); err != nil {
			r.t.Fatal(err)
		}
	}
}

const i2mounts = `set -e
mount --bind "$1/interfaces" /etc/network/interfaces
mount --bind "$1/if-up.d" /etc/network/if-up.d
mount --bind "$1/if-down.d" /etc/network/if-down.d
mount --bind "$1/run" /run/network
mount --bind "$1/state" "$2"
shift 2
exec "$@"`

// run runs an ifupdown2 command (ifup, ifdown, ifreload) in the router as
// the boot would: as root, with systemd's PATH and nothing else in the
// environment.
func (r *i2router) run(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.ns.name, "sh", "-c", i2mounts, "sh", r.dir, r.stateDir}, args...)...)
	cmd.Env = []string{bootPATH}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// complaints returns the warning and error lines of ifupdown2's output.
// ifupdown2 logs a failed post-up or pre-down line only as a warning and
// exits 0, so its exit status alone proves nothing.
//
// One line is left out: "error: recv() error: ..." is logged by the
// notification thread of ifupdown2's netlink cache (nlmanager/
// nllistener.py) when a recv on its listening socket fails; the thread
// drops that read and goes on, and the command's own requests, and so its
// result, are not affected. Seen once in CI (EINVAL, during ifreload -a);
// the tests check the kernel's state themselves after every command.
func complaints(out string) []string {
	var bad []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "error: recv() error: ") {
			continue
		}
		if strings.HasPrefix(l, "warning:") || strings.HasPrefix(l, "error:") {
			bad = append(bad, l)
		}
	}
	return bad
}

// must runs an ifupdown2 command in each router at once (each has its own
// lock), and fails the test if any exits non-zero or complains.
func i2must(t *testing.T, rs []*i2router, args ...string) {
	t.Helper()
	outs := make([]string, len(rs))
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func(i int, r *i2router) {
			defer wg.Done()
			outs[i], errs[i] = r.run(args...)
		}(i, r)
	}
	wg.Wait()
	for i, r := range rs {
		if errs[i] != nil || len(complaints(outs[i])) > 0 {
			t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), r.ns.name, errs[i], outs[i])
		}
	}
}

// newI2Sites is the two-site topology (newTwoSites) with an ifupdown2 for
// each router. The routers' stanzas are static eth1 with extra lines.
func newI2Sites(t *testing.T, r1extra, r2extra string) (*twoSites, []*i2router) {
	t.Helper()
	stateDir := requireIfupdown2(t)
	s := newTwoSites(t, "", "", false)
	rs := []*i2router{newI2Router(t, s.r1, stateDir), newI2Router(t, s.r2, stateDir)}
	rs[0].setInterfaces(i2stanza("198.51.100.1", "198.51.100.254", r1extra))
	rs[1].setInterfaces(i2stanza("203.0.113.1", "203.0.113.254", r2extra))
	return s, rs
}

// i2lo is the loopback stanza every interfaces file has; gre-hook's hooks
// run for it too, and must do nothing.
const i2lo = "auto lo\niface lo inet loopback\n"

func i2stanza(addr, gw, extra string) string {
	return fmt.Sprintf("%s\nauto eth1\niface eth1 inet static\n    address %s/24\n    gateway %s\n%s", i2lo, addr, gw, extra)
}

// checkOwnState checks that each router's ifupdown2 wrote its state to
// its own directories and not to the root's.
func checkOwnState(t *testing.T, rs []*i2router) {
	t.Helper()
	for _, r := range rs {
		if st, err := os.Stat(filepath.Join(r.path("state"), "ifstatenew")); err != nil || st.Size() == 0 {
			t.Errorf("%s: ifupdown2 kept no state in the router's own state_dir: %v", r.ns.name, err)
		}
		if _, err := os.Stat(filepath.Join(r.path("run"), ".lock")); err != nil {
			t.Errorf("%s: ifupdown2 took no lock in the router's own /run/network: %v", r.ns.name, err)
		}
	}
	for _, p := range []string{filepath.Join(rs[0].stateDir, "ifstatenew"), "/run/network/.lock"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists in the shared root (%v): a router's ifupdown2 did not use its own", p, err)
		}
	}
}

// TestIfupdown2Environment pins what ifupdown2 gives the two ways of
// calling gre-hook, which its README relies on: post-up and pre-down lines
// get no PHASE, no MODE and no IF_* options; if-up.d and if-down.d scripts
// get PHASE up or down and every stanza option, an unknown one included.
func TestIfupdown2Environment(t *testing.T) {
	t.Parallel()
	stateDir := requireIfupdown2(t)
	ns := newNS(t)
	ns.ip("link", "add", "eth1", "type", "dummy")
	r := newI2Router(t, ns, stateDir)
	out := t.TempDir()
	dump := fmt.Sprintf("#!/bin/sh\nenv > %s/hook-$PHASE.env\n", out)
	for _, d := range []string{"if-up.d", "if-down.d"} {
		if err := os.WriteFile(filepath.Join(r.path(d), "dump-env"), []byte(dump), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.setInterfaces(fmt.Sprintf(`auto eth1
iface eth1 inet static
    address 192.0.2.1/24
    gre-hook-config /etc/gre-hook/elsewhere.toml
    post-up env > %[1]s/line-post-up.env
    pre-down env > %[1]s/line-pre-down.env
    post-up %[2]s
`, out, bin))

	upOut, err := r.run("ifup", "-a")
	if err != nil {
		t.Fatalf("ifup -a: %v\n%s", err, upOut)
	}
	if downOut, err := r.run("ifdown", "-a"); err != nil {
		t.Fatalf("ifdown -a: %v\n%s", err, downOut)
	}
	read := func(name string) map[string]string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("ifupdown2 did not run it: %v\nifup said:\n%s", err, upOut)
		}
		env := map[string]string{}
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				env[k] = v
			}
		}
		return env
	}
	expect := func(what string, env map[string]string, want map[string]string) {
		t.Helper()
		var bad []string
		for k, v := range want {
			got, ok := env[k]
			switch {
			case v == "" && ok:
				bad = append(bad, fmt.Sprintf("%s=%q, want it unset", k, got))
			case v != "" && got != v:
				bad = append(bad, fmt.Sprintf("%s=%q, want %q", k, got, v))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s:\n%s", what, strings.Join(bad, "\n"))
		}
	}
	line := map[string]string{"IFACE": "eth1", "LOGICAL": "eth1", "METHOD": "static", "ADDRFAM": "inet",
		"PHASE": "", "MODE": "", "IF_GRE_HOOK_CONFIG": "", "IF_ADDRESS": ""}
	expect("a post-up line's environment", read("line-post-up.env"), line)
	expect("a pre-down line's environment", read("line-pre-down.env"), line)
	expect("an if-up.d script's environment", read("hook-up.env"), map[string]string{
		"IFACE": "eth1", "PHASE": "up", "MODE": "start", "IF_GRE_HOOK_CONFIG": "/etc/gre-hook/elsewhere.toml", "IF_ADDRESS": "192.0.2.1/24"})
	expect("an if-down.d script's environment", read("hook-down.env"), map[string]string{
		"IFACE": "eth1", "PHASE": "down", "MODE": "stop", "IF_GRE_HOOK_CONFIG": "/etc/gre-hook/elsewhere.toml"})

	// The unknown option passed without a word, and the bare gre-hook line
	// (no phase to be had) failed loudly: ifupdown2 shows it as a warning.
	var warned bool
	for _, l := range complaints(upOut) {
		if strings.Contains(l, "gre-hook") && strings.Contains(l, "post-up cmd '"+bin+"' failed: returned 2") {
			warned = true
		} else {
			t.Errorf("unexpected complaint from ifup: %s", l)
		}
	}
	if !warned {
		t.Errorf("a bare %s post-up line did not show as a failed command:\n%s", bin, upOut)
	}
}

// TestIfupdown2StanzaLines runs the two-site scenario under ifupdown2 with
// gre-hook in post-up and pre-down lines that name the phase, the form
// ifupdown2 needs. The config goes on the line: ifupdown2 passes a line
// no stanza options, so "gre-hook-config" would not reach it.
func TestIfupdown2StanzaLines(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	lines := func(site string) string {
		cfg := filepath.Join(root, "configs", site)
		return fmt.Sprintf("    post-up %[1]s up --config %[2]s\n    pre-down %[1]s down --config %[2]s\n", bin, cfg)
	}
	s, rs := newI2Sites(t, lines("site1.toml"), lines("site2.toml"))
	for cycle := 1; cycle <= 2; cycle++ {
		t.Run(fmt.Sprintf("cycle %d", cycle), func(t *testing.T) {
			i2must(t, rs, "ifup", "-a")
			if cycle == 1 {
				checkOwnState(t, rs)
			}
			if _, ok := s.r1.link("gre-site2"); !ok {
				t.Fatal("the post-up line did not bring gre-site2 up")
			}
			s.checkTraffic(t)
			i2must(t, rs, "ifdown", "-a")
			s.checkClean(t)
		})
	}
}

// TestIfupdown2Hooks runs the two-site scenario under ifupdown2 with
// gre-hook only in if-up.d and if-down.d, as the Debian package installs
// it, and each site's config named by the stanza option gre-hook-config,
// which ifupdown2 passes to those scripts as IF_GRE_HOOK_CONFIG.
func TestIfupdown2Hooks(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	opt := func(site string) string {
		return fmt.Sprintf("    gre-hook-config %s\n", filepath.Join(root, "configs", site))
	}
	s, rs := newI2Sites(t, opt("site1.toml"), opt("site2.toml"))
	for _, r := range rs {
		r.installHooks()
	}
	i2must(t, rs, "ifup", "-a")
	if _, ok := s.r1.link("gre-site2"); !ok {
		t.Fatal("the if-up.d hook did not bring gre-site2 up")
	}
	s.checkTraffic(t)
	i2must(t, rs, "ifdown", "-a")
	s.checkClean(t)
}

var i2extraTunnel = fixture.Config(fixture.Site2().Named("gre-extra").Set("remote", `"203.0.113.99"`).Set("address", `["10.0.1.1/30"]`).
	Routing("192.168.3.0/24"))

// TestIfupdown2Reload edits a router's config while its tunnels are up and
// runs `ifreload -a`, which re-runs the up hooks of interfaces that are
// already up (and no down hook). The change must be applied, a tunnel
// taken out of the config must go, and nothing may be there twice. Last,
// eth1's stanza leaves /etc/network/interfaces: ifreload -a then takes
// eth1 down with its old stanza, down hooks included.
func TestIfupdown2Reload(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	cfg := writeConfig(t, fixture.Config(fixture.Site2())+i2extraTunnel)
	s, rs := newI2Sites(t, fmt.Sprintf("    gre-hook-config %s\n", cfg),
		fmt.Sprintf("    gre-hook-config %s\n", filepath.Join(root, "configs", "site2.toml")))
	for _, r := range rs {
		r.installHooks()
	}
	r1 := rs[0]
	i2must(t, rs, "ifup", "-a")
	checkR1 := func(wantLinks map[string]int, wantRoutes []string) {
		t.Helper()
		ours := map[string]int{}
		for name, l := range s.r1.links() {
			if strings.HasPrefix(l.Ifalias, "gre-hook") {
				ours[name] = l.Mtu
			}
		}
		assertEq(t, "gre-hook's links on r1 (name:mtu)", ours, wantLinks)
		var routes []string
		for _, r := range s.r1.ourRoutes() {
			routes = append(routes, strings.SplitN(r, " proto ", 2)[0])
		}
		sort.Strings(routes)
		assertEq(t, "gre-hook's routes on r1", routes, wantRoutes)
		var rules []string
		for _, r := range s.r1.mangle("iptables") {
			if strings.HasPrefix(r, "-A GRE-HOOK ") {
				rules = append(rules, strings.Fields(r)[3]) // -A GRE-HOOK -o NAME ...
			} else if strings.Contains(r, "-j GRE-HOOK") {
				rules = append(rules, "jump from "+strings.Fields(r)[1])
			}
		}
		sort.Strings(rules)
		var want []string
		for name := range wantLinks {
			want = append(want, name)
		}
		want = append(want, "jump from POSTROUTING")
		sort.Strings(want)
		assertEq(t, "MSS rules in r1's GRE-HOOK chain (by -o) and jumps into it", rules, want)
	}
	checkR1(map[string]int{"gre-site2": 1476, "gre-extra": 1476}, []string{
		"192.168.2.0/24 via 10.0.0.2 dev gre-site2", "192.168.3.0/24 via 10.0.1.2 dev gre-extra"})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("ifreload with nothing changed changes nothing", func(t *testing.T) {
		before := s.r1.snapshot("iptables")
		i2must(t, []*i2router{r1}, "ifreload", "-a")
		s.r1.assertUnchanged("ifreload -a with no change", before, "iptables")
	})

	t.Run("ifreload applies a new mtu and drops a removed tunnel", func(t *testing.T) {
		if err := os.WriteFile(cfg, []byte(fixture.Config(fixture.Site2().Set("mtu", "1400"))), 0o644); err != nil {
			t.Fatal(err)
		}
		i2must(t, []*i2router{r1}, "ifreload", "-a")
		checkR1(map[string]int{"gre-site2": 1400}, []string{"192.168.2.0/24 via 10.0.0.2 dev gre-site2"})
		if l, ok := s.r1.link("gre-extra"); ok {
			t.Errorf("gre-extra is still there after it left the config: %+v", l)
		}
		if out, err := s.h1.try("ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.2.10"); err != nil {
			t.Errorf("ping h1 -> h2 after the reload: %v\n%s", err, out)
		}
	})

	t.Run("ifdown eth1 leaves nothing", func(t *testing.T) {
		i2must(t, rs, "ifdown", "eth1")
		s.r1.assertClean()
		s.r2.assertClean()
	})

	t.Run("ifreload without eth1's stanza takes its tunnels down", func(t *testing.T) {
		i2must(t, []*i2router{r1}, "ifup", "-a")
		if _, ok := s.r1.link("gre-site2"); !ok {
			t.Fatal("ifup -a did not bring gre-site2 back")
		}
		// With no stanza left at all, ifreload would down nothing
		// ("nothing to reload"); a real file always keeps lo.
		r1.setInterfaces(i2lo)
		i2must(t, []*i2router{r1}, "ifreload", "-a")
		s.r1.assertClean()
	})
}
