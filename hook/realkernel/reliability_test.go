//go:build realkernel

package realkernel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
	"github.com/gre-hook/gre-hook/hook/state"
)

// Helpers for the reliability tests: the namespace's state directory, a
// snapshot of everything a run could change, and runs started in the
// background.

// stateDir is where gre-hook keeps its records and lock when it runs in
// this namespace, asked of state.DirFor on a thread inside it. The
// directory outlives the namespace, so it is removed when the test ends.
func (n *netns) stateDir() string {
	n.t.Helper()
	dir, err := inNetns(n.name, func() (string, error) { return state.DirFor(state.DefaultDir), nil })
	if err != nil {
		n.t.Fatal(err)
	}
	if dir == state.DefaultDir {
		n.t.Fatalf("namespace %s has the initial namespace's state directory", n.name)
	}
	return dir
}

// inNetns runs f on a thread of its own inside the named namespace. The
// thread is locked and never returned to the scheduler, so Go discards it
// rather than let it run other goroutines in the wrong namespace.
func inNetns(name string, f func() (string, error)) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", name, err)}
			return
		}
		s, err := f()
		ch <- result{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// newCleanNS is newNS whose state directory is removed at the end.
func newCleanNS(t *testing.T) *netns {
	ns := newNS(t)
	dir := ns.stateDir()
	os.RemoveAll(dir)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return ns
}

// records lists the record files in the namespace's state directory.
func (n *netns) records() []string {
	n.t.Helper()
	names, _ := filepath.Glob(filepath.Join(n.stateDir(), "*.json"))
	var out []string
	for _, p := range names {
		out = append(out, filepath.Base(p))
	}
	return out
}

// assertNothingLeft fails unless the kernel has nothing of gre-hook's and
// no record is left.
func (n *netns) assertNothingLeft(what string) {
	n.t.Helper()
	left := n.greHookLeft()
	if recs := n.records(); len(recs) > 0 {
		left = append(left, "records "+strings.Join(recs, " "))
	}
	if len(left) > 0 {
		n.t.Fatalf("%s: gre-hook left behind:\n%s", what, strings.Join(left, "\n"))
	}
}

// snapshot renders everything a run may change: links with their kind,
// alias, mtu, state and addresses, the routes and rules of both families in every
// table, the mangle tables through each of ipts, and the record files.
func (n *netns) snapshot(ipts ...string) string {
	n.t.Helper()
	var b strings.Builder
	links := n.links()
	names := make([]string, 0, len(links))
	for name := range links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := links[name]
		var addrs []string
		for _, a := range l.AddrInfo {
			if a.Scope != "link" {
				addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
			}
		}
		fmt.Fprintf(&b, "link %s kind %s alias %q mtu %d up %v addrs %v remote %s\n", name, l.Linkinfo.InfoKind, l.Ifalias, l.Mtu, l.has("UP"), addrs, l.data("remote"))
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range n.routes(fam) {
			fmt.Fprintf(&b, "route %s\n", r)
		}
		for _, r := range strings.Split(strings.TrimSpace(n.ip(fam, "rule", "show")), "\n") {
			fmt.Fprintf(&b, "rule %s %s\n", fam, strings.Join(strings.Fields(r), " "))
		}
	}
	if len(ipts) == 0 {
		ipts = []string{"iptables", "ip6tables"}
	}
	for _, cmd := range ipts {
		for _, r := range n.mangle(cmd) {
			fmt.Fprintf(&b, "%s %s\n", cmd, strings.ReplaceAll(r, `"`, ""))
		}
	}
	fmt.Fprintf(&b, "records %v\n", n.records())
	return b.String()
}

// assertUnchanged compares the namespace with a snapshot taken before a
// refused or rolled-back run.
func (n *netns) assertUnchanged(what, before string, ipts ...string) {
	n.t.Helper()
	if after := n.snapshot(ipts...); after != before {
		n.t.Fatalf("%s changed the kernel or the records:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

// upRefused runs an up on eth1 that must exit with code and say each of
// subs, and checks that it changed nothing. It returns the result and the
// snapshot taken before, for further checks.
func (n *netns) upRefused(env []string, cfg, what string, code int, subs ...string) (result, string) {
	n.t.Helper()
	before := n.snapshot()
	r := n.gh(env, "--config", cfg, "--iface", "eth1", "--phase", "up")
	expectFail(n.t, what, r, code, subs...)
	n.assertUnchanged(what, before)
	return r, before
}

// start runs gre-hook in the namespace in the background.
type bg struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func (n *netns) start(env []string, args ...string) *bg {
	n.t.Helper()
	b := &bg{cmd: exec.Command("ip", append([]string{"netns", "exec", n.name, bin}, args...)...)}
	b.cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	return b
}

func (b *bg) wait() result {
	err := b.cmd.Wait()
	r := result{stdout: b.stdout.String(), stderr: b.stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

// expectFail requires exit code code and every substring in stderr.
func expectFail(t *testing.T, what string, r result, code int, subs ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, code, r.stdout, r.stderr)
	}
	for _, s := range subs {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("%s: message lacks %q:\n%s", what, s, r.stderr)
		}
	}
}

// holdLock takes an exclusive flock on path, as another process would,
// until release is called or the test ends. flock locks belong to the
// open file, so holding it in this process is the same to gre-hook as
// `flock path sleep`.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		t.Fatalf("cannot take %s for the test: %v", path, err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

// pathWith makes a directory of symlinks to the named tools (found on the
// usual PATH), plus the extra files given, and returns a PATH of only it.
func pathWith(t *testing.T, tools map[string]string, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for name, target := range tools {
		p, err := exec.LookPath(target)
		if err != nil {
			t.Fatalf("%s is not installed: %v", target, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return "PATH=" + dir
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

// TestLockContention holds gre-hook's lock as another run would and checks
// that a run with GRE_HOOK_LOCK_WAIT=1 gives up within a bounded time,
// names the lock, and changes nothing; then that it works once the lock is
// free.
func TestLockContention(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1)
	lock := filepath.Join(ns.stateDir(), "lock")
	holdLock(t, lock)
	before := ns.snapshot()
	for _, phase := range []string{"up", "down"} {
		began := time.Now()
		r := ns.gh([]string{"GRE_HOOK_LOCK_WAIT=1"}, "--config", cfg, "--iface", "eth1", "--phase", phase)
		took := time.Since(began)
		expectFail(t, phase+" with the lock held", r, 1, "another gre-hook run holds the lock "+lock, "after waiting 1s")
		// One second of waiting plus a slow process start, not the default 30.
		if took > 15*time.Second {
			t.Errorf("%s with GRE_HOOK_LOCK_WAIT=1 took %s", phase, took)
		}
		ns.assertUnchanged(phase+" with the lock held", before)
	}
}

// TestLeftoversWithoutPreDown: ifupdown lost track of the interface after
// post-up (no pre-down will come). A later down by hand, or gc once the
// tunnels are gone from the config, removes every link, route, rule and
// record. gc refuses to run on a broken config.
func TestLeftoversWithoutPreDown(t *testing.T) {
	t.Parallel()
	t.Run("down by hand", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		cfg := writeConfig(t, site1)
		before := ns.snapshot()
		ns.up(cfg, "eth1")
		ns.down(cfg, "eth1")
		ns.assertNothingLeft("down by hand")
		ns.assertUnchanged("up then down", before)
	})
	t.Run("gc", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		cfg := writeConfig(t, site1)
		before := ns.snapshot()
		ns.up(cfg, "eth1")
		// gc keeps what the config and the record both explain.
		ns.must(ns.gh(nil, "gc", "--config", cfg))
		if _, ok := ns.link("gre-site2"); !ok {
			t.Fatal("gc removed a configured tunnel that is up")
		}
		// A broken config stops gc before it changes anything.
		os.WriteFile(cfg, []byte(site1+"\n[[tunnel]]\nname = 5\n"), 0o644)
		mid := ns.snapshot()
		expectFail(t, "gc with a broken config", ns.gh(nil, "gc", "--config", cfg), 2, "gc: refusing to run with a broken config")
		ns.assertUnchanged("gc with a broken config", mid)
		// The tunnels are taken out of the config.
		os.WriteFile(cfg, []byte("# no tunnels\n"), 0o644)
		ns.must(ns.gh(nil, "gc", "--config", cfg))
		ns.assertNothingLeft("gc")
		ns.assertUnchanged("up then gc", before)
	})
}

// TestDownAfterConfigChanged edits the config between up and down; down
// must still remove exactly what up created and nothing else.
func TestDownAfterConfigChanged(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		edit func(path string)
	}{
		{"tunnel renamed", func(p string) {
			os.WriteFile(p, []byte(fixture.Config(fixture.Site2().Named("gre-renamed"))), 0o644)
		}},
		{"remote changed", func(p string) {
			os.WriteFile(p, []byte(fixture.Config(fixture.Site2().Set("remote", `"203.0.113.99"`))), 0o644)
		}},
		{"config deleted", func(p string) { os.Remove(p) }},
	} {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns := newCleanNS(t)
			ns.dummy("eth1", "198.51.100.1/24", 1500)
			// Something of somebody else's, to prove down leaves it alone.
			ns.ip("link", "add", "other", "type", "gre", "local", "198.51.100.1", "remote", "192.0.2.7")
			ns.ip("route", "add", "192.0.2.0/24", "via", "198.51.100.254", "proto", "static")
			cfg := writeConfig(t, site1)
			before := ns.snapshot()
			ns.up(cfg, "eth1")
			c.edit(cfg)
			ns.down(cfg, "eth1")
			ns.assertUnchanged("up, "+c.name+", down", before)
		})
	}
}

// siteDefault is site1 with default_route: a route in gre-hook's table and
// the two rules to take down.
var siteDefault = fixture.Config(fixture.Site2().Set("default_route", "true"))

// TestUnderlayDeleted deletes the underlay while its tunnels are up; down
// (with IFACE gone) or gc must still remove everything.
func TestUnderlayDeleted(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"down", "gc"} {
		how := how
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ns := newCleanNS(t)
			ns.dummy("eth1", "198.51.100.1/24", 1500)
			ns.ip("route", "add", "default", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
			cfg := writeConfig(t, siteDefault)
			ns.up(cfg, "eth1")
			if routes := strings.Join(ns.ourRoutes(), "\n"); !strings.Contains(routes, "default via 10.0.0.2 dev gre-site2 proto 176 metric 1 table 18247") || len(ns.ourRules()) != 2 {
				t.Fatalf("no default route in gre-hook's table, or no rules:\n%s\n%q", routes, ns.ourRules())
			}
			ns.ip("link", "del", "eth1")
			if how == "down" {
				ns.down(cfg, "eth1")
			} else {
				ns.must(ns.gh(nil, "gc", "--config", cfg))
			}
			ns.assertNothingLeft(how + " after the underlay was deleted")
			// The default route went with eth1; nothing may be left in its
			// place, ours or a half-restored one.
			if routes := ns.routes("-4"); len(routes) != 0 {
				t.Errorf("routes left: %v", routes)
			}
		})
	}
}

// TestRecordLost removes the state directory while tunnels are up; gc (or
// down) finds everything by the kernel's marks and removes it.
func TestRecordLost(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"gc", "down"} {
		how := how
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ns := newCleanNS(t)
			ns.dummy("eth1", "198.51.100.1/24", 1500)
			ns.ip("route", "add", "default", "via", "198.51.100.254", "dev", "eth1", "proto", "static")
			cfg := writeConfig(t, siteDefault+fixture.Config(fixture.Site2().Named("gre-site3").Without("local").Set("remote", `"203.0.113.3"`).
				Set("address", `["10.0.0.5/30"]`).Routing("192.168.3.0/24")))
			ns.up(cfg, "eth1")
			if n := len(ns.ourRoutes()); n != 3 || len(ns.ourRules()) != 2 {
				t.Fatalf("want 3 routes of ours (the default in gre-hook's table, two LAN routes) and 2 rules, got %v %v", ns.ourRoutes(), ns.ourRules())
			}
			if err := os.RemoveAll(ns.stateDir()); err != nil {
				t.Fatal(err)
			}
			if how == "gc" {
				ns.must(ns.gh(nil, "gc", "--config", cfg))
			} else {
				ns.down(cfg, "eth1")
			}
			ns.assertNothingLeft(how + " after the records were lost")
		})
	}
}

// TestFaults injects one failure per case into an up and checks that the
// run fails with a message that says what happened, and that the kernel
// and the records are exactly as before.
func TestFaults(t *testing.T) {
	t.Parallel()
	t.Run("iptables missing", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		cfg := writeConfig(t, site1)
		path := pathWith(t, map[string]string{"ip": "ip", "modprobe": "modprobe"}, nil)
		r, _ := ns.upRefused([]string{path}, cfg, "up without iptables", 1, "iptables is not installed")
		if strings.Contains(r.stderr, "+ ip ") {
			t.Errorf("up changed something before finding iptables missing:\n%s", r.stderr)
		}
	})

	t.Run("xtables lock held", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		cfg := writeConfig(t, site1)
		// iptables-nft ignores the xtables lock; the legacy backend waits on it.
		path := pathWith(t, map[string]string{
			"ip": "ip", "modprobe": "modprobe",
			"iptables": "iptables-legacy", "iptables-restore": "iptables-legacy-restore",
			"ip6tables": "ip6tables-legacy", "ip6tables-restore": "ip6tables-legacy-restore",
		}, nil)
		ipts := []string{"iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"}
		before := ns.snapshot(ipts...)
		release := holdLock(t, "/run/xtables.lock")
		began := time.Now()
		r := ns.gh([]string{path, "GRE_HOOK_XTABLES_WAIT=1"}, "--config", cfg, "--iface", "eth1", "--phase", "up")
		// iptables-legacy -S, in the snapshot, would wait for the lock.
		release()
		expectFail(t, "up with the xtables lock held", r, 1, "xtables lock", "rolled back")
		if took := time.Since(began); took > 30*time.Second {
			t.Errorf("up with GRE_HOOK_XTABLES_WAIT=1 took %s", took)
		}
		ns.assertUnchanged("up with the xtables lock held", before, ipts...)
	})

	t.Run("underlay without address", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "", 1500)
		cfg := writeConfig(t, strings.Replace(site1, "local = \"198.51.100.1\"\n", "", 1))
		ns.upRefused(nil, cfg, "up on an underlay without address", 1, "local is automatic but underlay eth1 has no global IPv4 address yet")
	})

	t.Run("underlay down", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		ns.ip("link", "set", "eth1", "down")
		cfg := writeConfig(t, site1)
		ns.upRefused(nil, cfg, "up on a down underlay", 1, "the underlay is down; bring it up first")
	})

	t.Run("foreign route on a configured prefix", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		ns.ip("route", "add", "192.168.2.0/24", "via", "198.51.100.254", "proto", "static")
		cfg := writeConfig(t, site1)
		_, before := ns.upRefused(nil, cfg, "up over a foreign route", 1, "route 192.168.2.0/24: another route with that destination", "gre-hook did not create it")
		ns.down(cfg, "eth1")
		ns.assertUnchanged("down after a refused up", before)
	})

	t.Run("foreign rules in mangle POSTROUTING", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		// One plain rule, and one that wears gre-hook's comment format.
		ns.exec("iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", "eth1", "-j", "RETURN")
		ns.exec("iptables", "-t", "mangle", "-A", "POSTROUTING", "-m", "comment", "--comment", "gre-hook:eth1:gre-site2", "-j", "RETURN")
		foreign := func() []string {
			var out []string
			for _, r := range ns.mangle("iptables") {
				if !strings.Contains(r, "-j GRE-HOOK") && !strings.HasPrefix(r, "-A GRE-HOOK") && !strings.HasPrefix(r, "-N GRE-HOOK") {
					out = append(out, strings.ReplaceAll(r, `"`, ""))
				}
			}
			return out
		}
		want := foreign()
		if len(want) != 2 {
			t.Fatalf("foreign rules not in place: %v", want)
		}
		cfg := writeConfig(t, site1)
		ns.up(cfg, "eth1")
		assertEq(t, "foreign rules after up", foreign(), want)
		ns.must(ns.gh(nil, "status", "--config", cfg, "--iface", "eth1"))
		ns.down(cfg, "eth1")
		assertEq(t, "foreign rules after down", foreign(), want)
		if rules := strings.Join(ns.mangle("iptables"), "\n"); strings.Contains(rules, "GRE-HOOK") {
			t.Errorf("gre-hook's chain left:\n%s", rules)
		}
	})

	t.Run("kernel refuses midway with EEXIST", func(t *testing.T) {
		t.Parallel()
		ns := newCleanNS(t)
		ns.dummy("eth1", "198.51.100.1/24", 1500)
		ns.ip("link", "add", "foreign", "type", "gre", "local", "198.51.100.1", "remote", "203.0.113.1", "key", "5")
		cfg := writeConfig(t, `
[[tunnel]]
name = "first"
underlay = "eth1"
remote = "203.0.113.9"
address = ["10.0.0.5/30"]
[[tunnel.route]]
to = "192.168.9.0/24"

[[tunnel]]
name = "second"
underlay = "eth1"
local = "198.51.100.1"
remote = "203.0.113.1"
key = 5
address = ["10.0.0.1/30"]

[[tunnel]]
name = "third"
underlay = "eth1"
remote = "203.0.113.10"
address = ["10.0.0.9/30"]
[[tunnel.route]]
to = "192.168.10.0/24"
`)
		// The three links go to the kernel in one write: it refuses the
		// second and makes the third after it, and the rollback takes
		// back both it made, never the one it refused.
		r, _ := ns.upRefused(nil, cfg, "up colliding with a foreign tunnel", 1,
			`tunnel "second": ip tunnel add second`, "file exists", "tunnel foreign already uses local 198.51.100.1 remote 203.0.113.1 key 5", "rolled back")
		for _, made := range []string{"first", "third"} {
			if !strings.Contains(r.stderr, "+ ip link del "+made+"\n") {
				t.Errorf("the rollback did not remove %s, which it made:\n%s", made, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "ip link del second") {
			t.Errorf("the rollback deletes the second tunnel, which was never made:\n%s", r.stderr)
		}
	})

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		sig := sig
		t.Run("signal during up/"+sig.String(), func(t *testing.T) {
			t.Parallel()
			signalDuringUp(t, sig)
		})
	}
}

// signalDuringUp starts the up of 100 tunnels and sends sig once 20 of
// them exist. Afterwards all of them must be there (status 0) or none.
func signalDuringUp(t *testing.T, sig syscall.Signal) {
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	var cfg strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&cfg, "[[tunnel]]\nname = \"m%d\"\nunderlay = \"eth1\"\nremote = \"203.0.113.%d\"\naddress = [\"10.100.%d.1/30\"]\n[[tunnel.route]]\nto = \"172.17.%d.0/24\"\n\n", i, i, i, i)
	}
	path := writeConfig(t, cfg.String())
	before := ns.snapshot()

	cmd := exec.Command("ip", "netns", "exec", ns.name, bin, "--config", path, "--iface", "eth1", "--phase", "up")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	var mu sync.Mutex
	sent := false
	sc := bufio.NewScanner(pipe)
	added := 0
	for sc.Scan() {
		line := sc.Text()
		mu.Lock()
		stderr.WriteString(line + "\n")
		mu.Unlock()
		if strings.Contains(line, "+ ip tunnel add") {
			added++
		}
		// ip netns exec execs gre-hook in place: the pid is gre-hook's.
		if added == 20 && !sent {
			sent = true
			cmd.Process.Signal(sig)
		}
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	out := stderr.String()
	if !sent {
		t.Fatalf("up printed only %d tunnel adds; the signal was never sent:\n%s", added, out)
	}
	if code == 0 {
		t.Logf("%s arrived too late to stop the up: checking that all is applied", sig)
		ns.must(ns.gh(nil, "status", "--config", path, "--iface", "eth1"))
		ns.down(path, "eth1")
		ns.assertUnchanged("up, then down", before)
		return
	}
	t.Logf("%s stopped the up after %d tunnel adds (exit %d)", sig, added, code)
	if code != 1 || !strings.Contains(out, "interrupted") || !strings.Contains(out, "rolled back") {
		t.Errorf("exit %d; want 1 and a message saying the run was interrupted and rolled back:\n%s", code, lastLines(out, 5))
	}
	ns.assertNothingLeft("up interrupted by " + sig.String())
	ns.assertUnchanged("up interrupted by "+sig.String(), before)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestGREModuleUnavailable unloads ip_gre and makes both the kernel's
// autoload and modprobe fail: up must refuse before any change and say
// the kernel has no GRE support. It runs alone, as ip_gre can only be
// unloaded while no namespace has a gre link.
func TestGREModuleUnavailable(t *testing.T) {
	// Not parallel: the parallel tests wait until this has finished.
	const modprobeSysctl = "/proc/sys/kernel/modprobe"
	oldModprobe, err := os.ReadFile(modprobeSysctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(modprobeSysctl, oldModprobe, 0o644); err != nil {
			t.Errorf("restoring %s: %v", modprobeSysctl, err)
		}
		// The tests after this one need GRE back.
		if out, err := exec.Command("modprobe", "ip_gre").CombinedOutput(); err != nil {
			t.Errorf("modprobe ip_gre: %v: %s", err, out)
		}
	})
	// The namespace and the snapshot first, while modules still load: the
	// dummy link and iptables-nft need theirs.
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	ns.snapshot()
	if err := os.WriteFile(modprobeSysctl, []byte("/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Namespaces of earlier tests are freed asynchronously, and their gre
	// links hold the module until then.
	var out []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat("/sys/module/ip_gre"); err != nil {
			break
		}
		out, err = exec.Command("rmmod", "ip_gre").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			refs, _ := os.ReadFile("/sys/module/ip_gre/refcnt")
			t.Fatalf("ip_gre is loaded and cannot be unloaded (refcnt %s), so this test cannot show what a kernel without GRE does: rmmod: %v: %s",
				strings.TrimSpace(string(refs)), err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// upRefused's snapshot comes after the rmmod: without ip_gre, the
	// namespace has no gre0 and gretap0 either.
	cfg := writeConfig(t, site1)
	path := pathWith(t, map[string]string{"ip": "ip", "iptables": "iptables", "iptables-restore": "iptables-restore",
		"ip6tables": "ip6tables", "ip6tables-restore": "ip6tables-restore"},
		map[string]string{"modprobe": "#!/bin/sh\necho \"modprobe: FATAL: Module $1 not found (injected)\" >&2\nexit 1\n"})
	ns.upRefused([]string{path}, cfg, "up without the GRE module", 1, "this kernel has no GRE support: modprobe ip_gre failed", "injected")
	if _, err := os.Stat("/sys/module/ip_gre"); err == nil {
		t.Error("ip_gre got loaded after all")
	}

	// With the module not even on disk, status and a dry run foresee it:
	// status says so instead of printing commands that cannot work.
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	mods := "/lib/modules/" + unix.ByteSliceToString(uts.Release[:])
	if err := os.Rename(mods, mods+".hidden"); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the modules are back before modprobe.
	t.Cleanup(func() {
		if err := os.Rename(mods+".hidden", mods); err != nil {
			t.Errorf("putting %s back: %v", mods, err)
		}
	})
	noGRE := "this kernel has no GRE support: module ip_gre is not loaded, and there is no " + mods + " to load it from"
	r := ns.gh([]string{path}, "status", "--config", cfg)
	if r.code != 3 || !strings.Contains(r.stdout, "  - "+noGRE+"; up cannot create the link\n") || strings.Contains(r.stdout, "up would run") {
		t.Errorf("status without the GRE module: exit %d, want 3, %q and no commands:\n%s%s", r.code, noGRE, r.stdout, r.stderr)
	}
	r = ns.gh([]string{path}, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stderr, "gre-hook: warning: "+noGRE+"; a real up would fail\n") {
		t.Errorf("dry run without the GRE module: exit %d\n%s", r.code, r.stderr)
	}
}

// TestConfigSecurity: a config others could write is refused with a
// message saying how to fix it, and nothing changes;
// GRE_HOOK_INSECURE_CONFIG=1 accepts it.
func TestConfigSecurity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		make func(path string) error
		fix  string
	}{
		{"group-writable", func(p string) error { return os.Chmod(p, 0o664) }, "fix with: chmod go-w "},
		{"owned by uid 1000", func(p string) error { return os.Chown(p, 1000, 1000) }, "it is owned by uid 1000, not root; fix with: chown root: "},
	} {
		c := c
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns := newCleanNS(t)
			ns.dummy("eth1", "198.51.100.1/24", 1500)
			cfg := writeConfig(t, site1)
			if err := c.make(cfg); err != nil {
				t.Fatal(err)
			}
			_, before := ns.upRefused(nil, cfg, "up with an insecure config", 2, "refusing config "+cfg, c.fix+cfg)
			ns.must(ns.gh([]string{"GRE_HOOK_INSECURE_CONFIG=1"}, "--config", cfg, "--iface", "eth1", "--phase", "up"))
			if _, ok := ns.link("gre-site2"); !ok {
				t.Fatal("GRE_HOOK_INSECURE_CONFIG=1 up made no tunnel")
			}
			ns.must(ns.gh([]string{"GRE_HOOK_INSECURE_CONFIG=1"}, "--config", cfg, "--iface", "eth1", "--phase", "down"))
			ns.assertUnchanged("insecure up and down", before)
		})
	}
}

// TestStatusReportsDrift: status is 0 after up, 3 naming the difference
// after the MTU is changed or the route deleted by hand, and --json
// parses.
func TestStatusReportsDrift(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	cfg := writeConfig(t, site1)
	status := func(args ...string) result {
		return ns.gh(nil, append([]string{"status", "--config", cfg, "--iface", "eth1"}, args...)...)
	}
	type entry struct {
		Tunnel   string   `json:"tunnel"`
		Underlay string   `json:"underlay"`
		State    string   `json:"state"`
		Problems []string `json:"problems"`
	}
	parse := func(r result) []entry {
		t.Helper()
		var es []entry
		if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, r.stdout)
		}
		return es
	}
	ns.up(cfg, "eth1")
	if r := status(); r.code != 0 || !strings.Contains(r.stdout, "gre-site2 on eth1: up") {
		t.Fatalf("status after up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	assertEq(t, "status --json after up", parse(ns.must(status("--json"))), []entry{{Tunnel: "gre-site2", Underlay: "eth1", State: "up"}})

	ns.ip("link", "set", "gre-site2", "mtu", "1400")
	r := status()
	if r.code != 3 || !strings.Contains(r.stdout, "mtu is 1400, want 1476") {
		t.Errorf("status after an MTU change: exit %d, want 3 naming the MTU\n%s%s", r.code, r.stdout, r.stderr)
	}
	ns.ip("link", "set", "gre-site2", "mtu", "1476")
	ns.must(status())

	ns.ip("route", "del", "192.168.2.0/24")
	r = status()
	if r.code != 3 || !strings.Contains(r.stdout, "route replace 192.168.2.0/24 via 10.0.0.2 dev gre-site2") || !strings.Contains(r.stdout, "is missing") {
		t.Errorf("status after deleting the route: exit %d, want 3 naming the route\n%s%s", r.code, r.stdout, r.stderr)
	}
	rj := status("--json")
	if rj.code != 3 {
		t.Errorf("status --json on drift exited %d", rj.code)
	}
	es := parse(rj)
	if len(es) != 1 || es[0].State != "drift" || len(es[0].Problems) != 1 || !strings.Contains(es[0].Problems[0], "192.168.2.0/24") {
		t.Errorf("status --json on drift: %+v", es)
	}
	// up repairs it; down cleans.
	ns.up(cfg, "eth1")
	ns.must(status())
	ns.down(cfg, "eth1")
	ns.assertNothingLeft("down")
}
