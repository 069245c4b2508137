//go:build realkernel

// Package realkernel holds gre-hook's tests against a real Linux kernel:
// GRE links, routes and netfilter rules made by the gre-hook binary in
// throwaway network namespaces, checked by asking the kernel (ip -j,
// iptables -S) and by sending packets. They need root and a kernel with
// GRE; scripts/test runs them in a VM where the host kernel lacks it.
// Where they cannot run they fail: they never skip.
package realkernel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// bin is the gre-hook binary under test (GRE_HOOK_BIN).
var bin string

func TestMain(m *testing.M) {
	if err := preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "realkernel: cannot run: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("these tests need root (run them with scripts/test, which uses a VM)")
	}
	bin = os.Getenv("GRE_HOOK_BIN")
	if bin == "" || !filepath.IsAbs(bin) {
		return fmt.Errorf("GRE_HOOK_BIN must be the absolute path of a built gre-hook binary")
	}
	if _, err := os.Stat(bin); err != nil {
		return err
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: %w", tool, err)
		}
	}
	// Loading a tunnel module adds its fallback devices (ip6gre0, ip6tnl0)
	// to every namespace at once, so a test that loads one would show up
	// as a change in the snapshots of tests running beside it. Load them
	// all before any namespace is made.
	for _, m := range []string{"ip_gre", "ip6_gre"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			return fmt.Errorf("modprobe %s: %v: %s", m, err, out)
		}
	}
	// Prove the kernel can make a GRE link at all, in a scratch namespace.
	ns := "rk-probe"
	exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "probe", "type", "gre", "local", "192.0.2.1", "remote", "192.0.2.2").CombinedOutput(); err != nil {
		return fmt.Errorf("this kernel cannot make GRE links: %v: %s", err, out)
	}
	return nil
}

var nsCounter int64

// netns is a throwaway network namespace.
type netns struct {
	t    *testing.T
	name string
	// bin, if set, is the gre-hook binary this namespace runs instead of
	// the one under test.
	bin string
	// probing is set while eventually polls the namespace: a command that
	// fails then is the poll's complaint for that round (see fatalf).
	probing int32
}

// probeFailure is what a failed command of a namespace being polled
// panics with, for eventually to take as that round's complaint.
type probeFailure string

// fatalf fails the test, or, while eventually polls the namespace, only
// that round: a dump interrupted by a link going away fails as surely as
// a link that is not there yet, and the poll is how the test waits for
// both to pass. Fatal on n.t from a subtest would fail the parent test.
func (n *netns) fatalf(format string, args ...interface{}) {
	n.t.Helper()
	if atomic.LoadInt32(&n.probing) > 0 {
		panic(probeFailure(fmt.Sprintf(format, args...)))
	}
	n.t.Fatalf(format, args...)
}

// run runs a command, failing as fatalf does.
func (n *netns) run(name string, args ...string) string {
	n.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		n.fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates a namespace with lo up, removed when the test ends.
func newNS(t *testing.T) *netns {
	t.Helper()
	name := fmt.Sprintf("rk%d-%d", os.Getpid()%10000, atomic.AddInt64(&nsCounter, 1))
	ns := &netns{t: t, name: name}
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", name).Run()
	})
	ns.ip("link", "set", "lo", "up")
	return ns
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exec runs a command inside the namespace and fails the test on error.
func (n *netns) exec(name string, args ...string) string {
	n.t.Helper()
	return n.run("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// try runs a command inside the namespace and returns its output and error.
func (n *netns) try(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...).CombinedOutput()
	return string(out), err
}

func (n *netns) ip(args ...string) string {
	n.t.Helper()
	return n.run("ip", append([]string{"-n", n.name}, args...)...)
}

// dummy makes an underlay: a dummy link with an address, up.
func (n *netns) dummy(name, addr string, mtu int) {
	n.t.Helper()
	n.ip("link", "add", name, "type", "dummy")
	n.ip("link", "set", name, "mtu", fmt.Sprint(mtu))
	if addr != "" {
		n.ip("addr", "add", addr, "dev", name)
	}
	n.ip("link", "set", name, "up")
}

// result is a finished gre-hook run.
type result struct {
	code   int
	stdout string
	stderr string
}

// gh runs gre-hook in the namespace with env (KEY=VALUE) and args.
func (n *netns) gh(env []string, args ...string) result {
	n.t.Helper()
	b := bin
	if n.bin != "" {
		b = n.bin
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, b}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			n.t.Fatalf("running gre-hook: %v", err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// up and down run gre-hook by hand with a config file, and require success.
func (n *netns) up(cfg, iface string) result {
	n.t.Helper()
	return n.must(n.gh(nil, "--config", cfg, "--iface", iface, "--phase", "up"))
}

func (n *netns) down(cfg, iface string) result {
	n.t.Helper()
	return n.must(n.gh(nil, "--config", cfg, "--iface", iface, "--phase", "down"))
}

func (n *netns) must(r result) result {
	n.t.Helper()
	if r.code != 0 {
		n.t.Fatalf("gre-hook exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// writeConfig writes a config file readable only by root, as gre-hook
// demands, and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "gre-hook.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Kernel views, parsed from ip's JSON output.

type linkInfo struct {
	Ifname    string   `json:"ifname"`
	Mtu       int      `json:"mtu"`
	Flags     []string `json:"flags"`
	Operstate string   `json:"operstate"`
	Ifalias   string   `json:"ifalias"`
	Group     string   `json:"group"`
	Linkinfo  struct {
		InfoKind string                 `json:"info_kind"`
		InfoData map[string]interface{} `json:"info_data"`
	} `json:"linkinfo"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
		Broadcast string `json:"broadcast"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

func (l linkInfo) has(flag string) bool {
	for _, f := range l.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// data returns an info_data attribute as a string ("" if absent).
func (l linkInfo) data(key string) string {
	v, ok := l.Linkinfo.InfoData[key]
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

// links returns every link in the namespace, with addresses.
func (n *netns) links() map[string]linkInfo {
	n.t.Helper()
	out := n.ip("-j", "-d", "addr", "show")
	var ls []linkInfo
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		n.fatalf("parsing ip -j addr: %v\n%s", err, out)
	}
	m := map[string]linkInfo{}
	for _, l := range ls {
		m[l.Ifname] = l
	}
	return m
}

func (n *netns) link(name string) (linkInfo, bool) {
	n.t.Helper()
	l, ok := n.links()[name]
	return l, ok
}

type routeInfo struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Metric   int    `json:"metric"`
	Table    string `json:"table"`
}

func (r routeInfo) String() string {
	return fmt.Sprintf("%s via %s dev %s proto %s metric %d table %s", r.Dst, r.Gateway, r.Dev, r.Protocol, r.Metric, r.Table)
}

// routes returns the routes of a family ("-4" or "-6") in every table but
// local, as "DST via GW dev DEV proto P metric M table T" strings.
func (n *netns) routes(fam string) []string {
	n.t.Helper()
	out := n.ip(fam, "-j", "route", "show", "table", "all")
	var rs []routeInfo
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		n.fatalf("parsing ip -j route: %v\n%s", err, out)
	}
	var lines []string
	for _, r := range rs {
		if r.Table == "local" || strings.HasPrefix(r.Dst, "fe80:") || strings.HasPrefix(r.Dst, "ff00:") || r.Dst == "multicast" {
			continue
		}
		if r.Table == "" {
			r.Table = "main"
		}
		lines = append(lines, r.String())
	}
	return lines
}

// ourRoutes returns the routes with gre-hook's protocol, 176.
func (n *netns) ourRoutes() []string {
	n.t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range n.routes(fam) {
			if strings.Contains(r, " proto 176 ") || strings.Contains(r, " proto gre-hook ") {
				out = append(out, r)
			}
		}
	}
	return out
}

// mangle returns the mangle table's rules for a family (iptables or
// ip6tables), as iptables -S prints them.
func (n *netns) mangle(cmd string) []string {
	n.t.Helper()
	out := n.exec(cmd, "-t", "mangle", "-S")
	var rules []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, "-N ") {
			rules = append(rules, l)
		}
	}
	return rules
}

// greHookLeft lists everything of gre-hook's that the kernel still has:
// links with its alias, routes with its protocol, rules and chains that
// mention it. Empty means clean.
func (n *netns) greHookLeft() []string {
	n.t.Helper()
	var left []string
	for name, l := range n.links() {
		if strings.HasPrefix(l.Ifalias, "gre-hook") || l.Linkinfo.InfoKind == "gre" && name != "gre0" || l.Linkinfo.InfoKind == "gretap" && name != "gretap0" ||
			l.Linkinfo.InfoKind == "ip6gre" && name != "ip6gre0" || l.Linkinfo.InfoKind == "ip6gretap" {
			left = append(left, "link "+name)
		}
	}
	for _, r := range n.ourRoutes() {
		left = append(left, "route "+r)
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(n.ip(fam, "rule", "show"), "\n") {
			if strings.Contains(l, "proto 176") || strings.Contains(l, "proto gre-hook") {
				left = append(left, "rule "+fam+" "+l)
			}
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, r := range n.mangle(cmd) {
			if strings.Contains(r, "GRE-HOOK") || strings.Contains(r, "gre-hook") {
				left = append(left, cmd+" "+r)
			}
		}
	}
	return left
}

func (n *netns) assertClean() {
	n.t.Helper()
	if left := n.greHookLeft(); len(left) > 0 {
		n.t.Fatalf("gre-hook left behind:\n%s", strings.Join(left, "\n"))
	}
}
