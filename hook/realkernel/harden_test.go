//go:build realkernel

package realkernel

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// TestRefusedNames: a tunnel or underlay name that iptables or the kernel
// would read as more than a name is refused with exit 2, in the config,
// in --iface and in IFACE, and the kernel is left as it was. Before the
// check, "gre+" became a link whose MSS rule "-o gre+" matched every gre
// interface, and "gre%d" a link the kernel named gre1.
func TestRefusedNames(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	// An underlay whose name holds the wildcard; the kernel allows it.
	ns.dummy("eth+", "198.51.100.2/24", 1500)
	// Each remote gets its own inner /30: two tunnels with one inner
	// address are an error of their own, which check reports too.
	inner := map[string]string{"203.0.113.1": "10.0.0.1/30", "203.0.113.2": "10.0.0.5/30"}
	tunnel := func(name, underlay, remote string) string {
		return "[[tunnel]]\nname = \"" + name + "\"\nunderlay = \"" + underlay + "\"\nlocal = \"198.51.100.1\"\nremote = \"" + remote + "\"\naddress = [\"" + inner[remote] + "\"]\n"
	}
	plus := `contains '+', which iptables reads as a wildcard`
	for _, c := range []struct {
		what, cfg string
		subs      []string
	}{
		{"tunnel gre+", tunnel("gre+", "eth1", "203.0.113.1"), []string{`tunnel "gre+": name: "gre+" ` + plus}},
		{"tunnel gre%d", tunnel("gre%d", "eth1", "203.0.113.1"), []string{`tunnel "gre%d": name: "gre%d" contains '%', which the kernel replaces with a number`}},
		// One good tunnel on eth1 does not make the config usable.
		{"underlay eth+ beside a good tunnel", tunnel("gre-ok", "eth1", "203.0.113.1") + tunnel("gre-a", "eth+", "203.0.113.2"),
			[]string{`tunnel "gre-a": underlay: "eth+" ` + plus}},
		{"several at once", tunnel("gre!x", "eth1", "203.0.113.1") + tunnel("gre*", "eth 1", "203.0.113.2"),
			[]string{`"gre!x" contains '!', which iptables reads as negation`, `"gre*" contains '*'`, `"eth 1" contains a space`}},
	} {
		cfg := writeConfig(t, c.cfg)
		r, _ := ns.upRefused(nil, cfg, "up with "+c.what, 2, c.subs...)
		if n := strings.Count(r.stderr, cfg+":"); n != len(c.subs) {
			t.Errorf("up with %s: %d errors, want %d:\n%s", c.what, n, len(c.subs), r.stderr)
		}
		if r := ns.gh(nil, "check", "--config", cfg); r.code != 2 || strings.Count(r.stderr, cfg+":") != len(c.subs) {
			t.Errorf("check with %s: exit %d, want 2 and %d errors:\n%s", c.what, r.code, len(c.subs), r.stderr)
		}
	}

	// The wildcard as the interface of a run, by hand and from ifupdown.
	cfg := writeConfig(t, tunnel("gre-a", "eth1", "203.0.113.2"))
	before := ns.snapshot()
	for _, c := range []struct {
		what string
		env  []string
		args []string
	}{
		{"--iface eth+", nil, []string{"--config", cfg, "--iface", "eth+", "--phase", "up"}},
		{"IFACE=eth+", []string{"IFACE=eth+", "PHASE=post-up", "MODE=start", "ADDRFAM=inet", "GRE_HOOK_CONFIG=" + cfg}, nil},
		{"gre-hook up with IFACE=eth+", []string{"IFACE=eth+", "GRE_HOOK_CONFIG=" + cfg}, []string{"up"}},
	} {
		expectFail(t, c.what, ns.gh(c.env, c.args...), 2, `"eth+" `+plus)
		ns.assertUnchanged(c.what, before)
	}
}

// TestConfigTrust: as root, a config is refused (exit 2, nothing changed,
// the message naming what to fix) when any directory above it is not
// root's or is writable by others, when a symlink on the way is not
// root's, or when a symlink leads through such a directory; a root-owned
// file in a sticky directory such as /tmp is accepted. The insecure
// setting accepts anything, and says so.
func TestConfigTrust(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	dir := func(path string, mode os.FileMode, uid int) string {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, uid, uid); err != nil {
			t.Fatal(err)
		}
		return path
	}
	file := func(path string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(site1), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	link := func(target, path string, uid int) string {
		t.Helper()
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(path, uid, uid); err != nil {
			t.Fatal(err)
		}
		return path
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) string { return dir(filepath.Join(base, name), 0o755, 0) }

	home := dir(filepath.Join(mk("a"), "home"), 0o755, 1000)
	inHome := file(filepath.Join(dir(filepath.Join(home, "etc"), 0o755, 0), "gre-hook.toml"))

	ww := dir(filepath.Join(mk("b"), "shared"), 0o777, 0)
	inWW := file(filepath.Join(dir(filepath.Join(ww, "etc"), 0o755, 0), "gre-hook.toml"))

	evil := dir(filepath.Join(mk("c"), "evil"), 0o755, 1000)
	confd := dir(filepath.Join(base, "c", "conf.d"), 0o755, 0)
	link(file(filepath.Join(evil, "site.toml")), filepath.Join(confd, "site.toml"), 0)

	confd2 := dir(filepath.Join(mk("d"), "conf.d"), 0o755, 0)
	userLink := link(file(filepath.Join(base, "d", "site.toml")), filepath.Join(confd2, "site.toml"), 1000)

	sticky := dir(filepath.Join(mk("e"), "tmp"), os.ModeSticky|0o777, 0)
	inSticky := file(filepath.Join(sticky, "gre-hook.toml"))
	stickyConfd := dir(filepath.Join(mk("f"), "conf.d"), os.ModeSticky|0o777, 0)
	file(filepath.Join(stickyConfd, "site.toml"))

	for _, c := range []struct {
		what, cfg string
		subs      []string
	}{
		{"a directory above owned by uid 1000", inHome,
			[]string{"refusing config " + inHome + ": directory " + home + " is owned by uid 1000, not root; fix with: chown root: " + home}},
		{"a world-writable directory above", inWW,
			[]string{"refusing config " + inWW + ": directory " + ww + " is writable by group or others (mode 0777); fix with: chmod go-w " + ww}},
		{"a conf.d symlink into uid 1000's directory", confd,
			[]string{"refusing config " + filepath.Join(confd, "site.toml") + ": directory " + evil + " is owned by uid 1000, not root; fix with: chown root: " + evil}},
		{"a symlink owned by uid 1000", confd2,
			[]string{"refusing config " + userLink + ": symlink " + userLink + " is owned by uid 1000, not root; fix with: chown -h root: " + userLink}},
		{"a sticky directory of *.toml files", stickyConfd,
			[]string{"refusing config " + stickyConfd + ": it is writable by group or others (mode 1777), so others could add files to it, sticky bit or not; fix with: chmod go-w " + stickyConfd}},
	} {
		r, before := ns.upRefused(nil, c.cfg, "up with "+c.what, 2, c.subs...)
		expectFail(t, "check with "+c.what, ns.gh(nil, "check", "--config", c.cfg), 2, c.subs...)
		// The insecure setting reads it, and says so on every run.
		warning := "gre-hook: warning: GRE_HOOK_INSECURE_CONFIG=1: "
		for _, args := range [][]string{{"check"}, {"--iface", "eth1", "--phase", "up"}, {"--iface", "eth1", "--phase", "down"}} {
			r = ns.must(ns.gh([]string{"GRE_HOOK_INSECURE_CONFIG=1"}, append(args, "--config", c.cfg)...))
			if !strings.HasPrefix(r.stderr, warning) {
				t.Errorf("%s with %s and GRE_HOOK_INSECURE_CONFIG=1: no warning first:\n%s", args[0], c.what, r.stderr)
			}
		}
		ns.assertUnchanged("insecure up and down with "+c.what, before)
	}

	// A root-owned file in a sticky directory is accepted, with no warning.
	before := ns.snapshot()
	if r := ns.up(inSticky, "eth1"); !strings.Contains(r.stderr, "ip tunnel add gre-site2") || strings.Contains(r.stderr, "warning") {
		t.Errorf("up from a sticky directory:\n%s", r.stderr)
	}
	ns.down(inSticky, "eth1")
	ns.assertUnchanged("up and down from a sticky directory", before)
}

// TestUpCommandKilledWithItsChildren: when gre-hook gets SIGTERM while an
// up_command runs, the command and what it started are killed, and the
// bring-up is undone. Killing only the command left its children running.
func TestUpCommandKilledWithItsChildren(t *testing.T) {
	t.Parallel()
	ns := newCleanNS(t)
	ns.dummy("eth1", "198.51.100.1/24", 1500)
	out := t.TempDir()
	os.Chmod(out, 0o755)
	pidfile := filepath.Join(out, "pid")
	cfg := writeConfig(t, fixture.Config(fixture.Site2().Set("up_command", `["/bin/sh", "-c", "/bin/sleep 300 & echo $! > `+pidfile+`; wait"]`)))
	before := ns.snapshot()
	b := ns.start(nil, "--config", cfg, "--iface", "eth1", "--phase", "up")
	var pid int
	for deadline := time.Now().Add(60 * time.Second); pid == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.cmd.Process.Kill()
			r := b.wait()
			t.Fatalf("the up_command never wrote its sleeper's PID:\n%s", r.stderr)
		}
		if data, err := os.ReadFile(pidfile); err == nil && strings.HasSuffix(string(data), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// ip netns exec execs gre-hook in place: the pid is gre-hook's.
	b.cmd.Process.Signal(syscall.SIGTERM)
	r := b.wait()
	expectFail(t, "SIGTERM during up_command", r, 1, "/bin/sh: killed with the processes it started: gre-hook is stopping")
	for deadline := time.Now().Add(5 * time.Second); processAlive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the up_command's sleeper (PID %d) is still running after gre-hook exited:\n%s", pid, r.stderr)
		}
	}
	ns.assertNothingLeft("up interrupted during up_command")
	ns.assertUnchanged("up interrupted during up_command", before)
}

// processAlive reports whether pid runs; a zombie, waiting for init to
// reap it, is dead.
func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
