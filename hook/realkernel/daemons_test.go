//go:build realkernel

package realkernel

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The real-daemon tier: systemd-networkd with networkd-dispatcher, and
// NetworkManager with its dispatcher, each calling the gre-hook package's
// dispatcher links. None of them is installed on the machine (they would
// take over its interfaces): scripts/test runs these tests in the package
// tier's VM, under `scripts/netdaemons run`, which installs them into the
// guest's throwaway root. Anywhere else they fail.
//
// The guest runs no systemd and no udev. Each router gets its own daemons
// in a mount namespace of its own, the one `ip netns exec` makes (which
// binds /etc/netns/NAME/* over /etc), with the router's own directories
// bound over the daemons' fixed paths: its system bus (/run/dbus), its
// networkd state (/run/systemd), its netplan YAML... /sys is read-only
// there, which tells both daemons that no udev will come.

// daemonRouter is one router's mount namespace and the daemons in it.
type daemonRouter struct {
	t     *testing.T
	ns    *netns
	dir   string
	pid   int // the holder: a process that keeps the mount namespace
	procs []*exec.Cmd
	names []string // each proc's name, given to start
}

// newDaemonRouter makes the router's mount namespace, with each of binds
// (a path of the root) covered by a fresh directory of the router's own,
// or by the given one.
func newDaemonRouter(t *testing.T, ns *netns, binds map[string]string) *daemonRouter {
	t.Helper()
	r := &daemonRouter{t: t, ns: ns, dir: t.TempDir()}
	os.Chmod(r.dir, 0o755)
	var script strings.Builder
	script.WriteString("set -e\n")
	for target, src := range binds {
		if src == "" {
			src = filepath.Join(r.dir, strings.ReplaceAll(strings.Trim(target, "/"), "/", "_"))
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "mount --bind %q %q\n", src, target)
	}
	// Both daemons wait for udev to announce each link when /sys is
	// writable; read-only, they take the links as they are.
	script.WriteString("mount -o remount,ro /sys\necho ready\nexec sleep 1000000\n")
	holder := exec.Command("ip", "netns", "exec", ns.name, "sh", "-c", script.String())
	holder.Stderr = os.Stderr
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := len(r.procs) - 1; i >= 0; i-- {
			p := r.procs[i]
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
		holder.Process.Kill()
		holder.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		holder.Wait()
		t.Fatalf("%s: setting up the daemons' mount namespace failed", ns.name)
	}
	// ip netns exec and sh exec in place: the holder's pid is the sleep's.
	r.pid = holder.Process.Pid
	return r
}

// cmd is a command inside the router's network and mount namespaces, with
// systemd's PATH and nothing else in its environment.
func (r *daemonRouter) cmd(args ...string) *exec.Cmd {
	c := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(r.pid), "-m", "-n", "--"}, args...)...)
	c.Env = []string{bootPATH, "LANG=C.UTF-8"}
	return c
}

func (r *daemonRouter) try(args ...string) (string, error) {
	out, err := r.cmd(args...).CombinedOutput()
	return string(out), err
}

func (r *daemonRouter) must(args ...string) string {
	r.t.Helper()
	out, err := r.try(args...)
	if err != nil {
		r.ns.fatalf("%s in %s: %v\n%s", strings.Join(args, " "), r.ns.name, err, out)
	}
	return out
}

// start runs a daemon in the router until the test ends, its output in
// DIR/NAME.log.
func (r *daemonRouter) start(name string, args ...string) {
	r.t.Helper()
	log, err := os.Create(filepath.Join(r.dir, name+".log"))
	if err != nil {
		r.t.Fatal(err)
	}
	c := r.cmd(args...)
	c.Stdout, c.Stderr = log, log
	if err := c.Start(); err != nil {
		r.t.Fatalf("starting %s in %s: %v", name, r.ns.name, err)
	}
	r.procs = append(r.procs, c)
	r.names = append(r.names, name)
}

// stop ends the daemon started as name, as systemctl stop would.
func (r *daemonRouter) stop(name string) {
	r.t.Helper()
	for i, p := range r.procs {
		if r.names[i] == name {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			r.names = append(r.names[:i], r.names[i+1:]...)
			return
		}
	}
	r.t.Fatalf("%s: no daemon %s to stop", r.ns.name, name)
}

// logs returns the daemons' logs, for a failure's message.
func (r *daemonRouter) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "--- %s (%s), last lines:\n%s\n", filepath.Base(f), r.ns.name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// eventually polls cond until it returns "" or the timeout passes, and
// fails the test with cond's last complaint.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() string, logs ...*daemonRouter) {
	t.Helper()
	for _, r := range logs {
		atomic.AddInt32(&r.ns.probing, 1)
		defer atomic.AddInt32(&r.ns.probing, -1)
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if last = probe(cond); last == "" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var b strings.Builder
	for _, r := range logs {
		b.WriteString(r.logs())
	}
	t.Fatalf("%s: not within %v: %s\n%s", what, timeout, last, b.String())
}

// probe runs one round of a poll: a command of a polled namespace that
// fails (fatalf) is the round's complaint.
func probe(cond func() string) (complaint string) {
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(probeFailure)
			if !ok {
				panic(p)
			}
			complaint = string(f)
		}
	}()
	return cond()
}

// The packages scripts/netdaemons installs, and where the gre-hook
// package links itself into their dispatchers.
var (
	netDaemonPackages = []string{"netplan.io", "networkd-dispatcher", "network-manager"}
	dispatcherLinks   = []string{
		"/usr/lib/networkd-dispatcher/routable.d/gre-hook",
		"/usr/lib/networkd-dispatcher/configured.d/gre-hook",
		"/usr/lib/networkd-dispatcher/off.d/gre-hook",
		"/usr/lib/networkd-dispatcher/no-carrier.d/gre-hook",
		"/usr/lib/networkd-dispatcher/linger.d/gre-hook",
		"/usr/lib/NetworkManager/dispatcher.d/gre-hook",
		"/usr/lib/NetworkManager/dispatcher.d/pre-down.d/gre-hook",
	}
)

func dpkgInstalled(pkg string) bool {
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).Output()
	return strings.HasPrefix(string(out), "ii")
}

// installMu keeps the daemon tests, which run in parallel, from running
// dpkg at once.
var installMu sync.Mutex

// requireDaemons fails the test unless the network managers are installed
// in this root and the gre-hook package is too, installing it from
// GRE_HOOK_DEB if no test before has. It stays installed for the other
// daemon test (this root is thrown away). TestPackage, which is not
// parallel and so runs before them, purges what it installs; if it ran
// after one, it purges that install before its own.
func requireDaemons(t *testing.T) {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	for _, p := range netDaemonPackages {
		if !dpkgInstalled(p) {
			t.Fatalf("%s is not installed in this root. These tests run only in scripts/vm's throwaway guest, "+
				"under `scripts/netdaemons run`, as scripts/test runs them", p)
		}
	}
	if !dpkgInstalled("gre-hook") {
		deb := os.Getenv("GRE_HOOK_DEB")
		if deb == "" {
			t.Fatal("GRE_HOOK_DEB must name the gre-hook .deb to install (scripts/test sets it)")
		}
		os.Remove("/var/lib/man-db/auto-update")
		if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg -i %s: %v\n%s", deb, err, out)
		}
	}
	for _, l := range dispatcherLinks {
		if dst, err := filepath.EvalSymlinks(l); err != nil || dst != "/usr/sbin/gre-hook" {
			t.Fatalf("the package's %s resolves to %q (%v), want /usr/sbin/gre-hook", l, dst, err)
		}
	}
}

// siteConfigs gives each router of s its site's config in
// /etc/gre-hook/conf.d, through /etc/netns/NAME/gre-hook, which `ip netns
// exec` binds over the package's /etc/gre-hook.
func siteConfigs(t *testing.T, s *twoSites) {
	t.Helper()
	root := repoRoot(t)
	for router, site := range map[*netns]string{s.r1: "site1.toml", s.r2: "site2.toml"} {
		dir := filepath.Join("/etc/netns", router.name, "gre-hook", "conf.d")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(filepath.Join("/etc/netns", router.name)) })
		data, err := os.ReadFile(filepath.Join(root, "configs", site))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, site), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "gre-hook.toml"), []byte("# empty\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sitePlan is what each router of the two sites has while its tunnel is
// up: the tunnel, and the route to the far LAN through it.
type siteRouter struct {
	r                    *daemonRouter
	tunnel, lan, gateway string
}

func (s siteRouter) tunnelUp() string {
	l, ok := s.r.ns.links()[s.tunnel]
	if !ok {
		return s.r.ns.name + ": no " + s.tunnel
	}
	if !l.has("UP") {
		return s.r.ns.name + ": " + s.tunnel + " is not up"
	}
	for _, rt := range s.r.ns.ourRoutes() {
		if strings.HasPrefix(rt, s.lan+" ") && strings.Contains(rt, " dev "+s.tunnel+" ") {
			return ""
		}
	}
	return fmt.Sprintf("%s: no route to %s through %s: %v", s.r.ns.name, s.lan, s.tunnel, s.r.ns.ourRoutes())
}

func (s siteRouter) clean() string {
	if left := s.r.ns.greHookLeft(); len(left) > 0 {
		return s.r.ns.name + " still has " + strings.Join(left, "; ")
	}
	return ""
}

// defaultRoute reports the router's default route unless it is the one
// its manager configured on the underlay.
func (s siteRouter) defaultRoute() string {
	out := strings.TrimSpace(s.r.ns.ip("-4", "route", "show", "default"))
	if !strings.HasPrefix(out, "default via "+s.gateway+" dev eth1 ") || strings.Contains(out, "\n") {
		return fmt.Sprintf("%s: default route is %q, want the one via %s dev eth1", s.r.ns.name, out, s.gateway)
	}
	return ""
}

func allOf(sites []siteRouter, f func(siteRouter) string) func() string {
	return func() string {
		for _, s := range sites {
			if m := f(s); m != "" {
				return m
			}
		}
		return ""
	}
}

// daemonSites is the two sites with each router's underlay under a
// manager that newRouter starts, and the package's links calling gre-hook.
type daemonSites struct {
	*twoSites
	sites []siteRouter
	rs    []*daemonRouter
}

func newDaemonSites(t *testing.T, newRouter func(*testing.T, *netns, string, string) *daemonRouter) *daemonSites {
	t.Helper()
	requireDaemons(t)
	s := newTwoSites(t, "", "", false)
	siteConfigs(t, s)
	r1 := newRouter(t, s.r1, "198.51.100.1", "198.51.100.254")
	r2 := newRouter(t, s.r2, "203.0.113.1", "203.0.113.254")
	return &daemonSites{twoSites: s, rs: []*daemonRouter{r1, r2}, sites: []siteRouter{
		{r: r1, tunnel: "gre-site2", lan: "192.168.2.0/24", gateway: "198.51.100.254"},
		{r: r2, tunnel: "gre-site1", lan: "192.168.1.0/24", gateway: "203.0.113.254"},
	}}
}

// up waits for both tunnels and both default routes, then pings LAN to
// LAN.
func (d *daemonSites) up(t *testing.T, what string) {
	t.Helper()
	eventually(t, 60*time.Second, what+": tunnels up", allOf(d.sites, siteRouter.tunnelUp), d.rs...)
	eventually(t, 30*time.Second, what+": default routes", allOf(d.sites, siteRouter.defaultRoute), d.rs...)
	// A manager may still be settling eth1 (its dispatcher runs queue up,
	// one at a time): the LANs must reach each other within the bound.
	eventually(t, 60*time.Second, what+": ping h1 -> h2", d.lanPing, d.rs...)
}

// lanPing pings h2 from h1 through the tunnel, and on a loss reports what
// the two routers have.
func (d *daemonSites) lanPing() string {
	out, err := d.h1.try("ping", "-c", "2", "-i", "0.3", "-W", "2", "192.168.2.10")
	if err == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n%s", err, out)
	for _, r := range d.rs {
		fmt.Fprintf(&b, "--- %s:\n%s%s%s", r.ns.name, r.ns.ip("-d", "link", "show"), r.ns.ip("route", "show", "table", "all"), r.ns.ip("rule", "show"))
	}
	return b.String()
}

// clean waits until neither router has anything of gre-hook's.
func (d *daemonSites) clean(t *testing.T, what string) {
	t.Helper()
	eventually(t, 60*time.Second, what, allOf(d.sites, siteRouter.clean), d.rs...)
}

// each runs a command in both routers.
func (d *daemonSites) each(args ...string) {
	for _, r := range d.rs {
		r.must(args...)
	}
}

// carrierLoss pulls r1's cable (its veth peer set down): r1's tunnel must
// go and r2's stay; with the cable back, both must work again.
func (d *daemonSites) carrierLoss(t *testing.T) {
	d.inet.ip("link", "set", "to-r1", "down")
	eventually(t, 60*time.Second, "r1 after carrier loss", d.sites[0].clean, d.rs...)
	if m := d.sites[1].tunnelUp(); m != "" {
		t.Errorf("carrier loss on r1 touched r2: %s", m)
	}
	d.inet.ip("link", "set", "to-r1", "up")
	d.up(t, "after carrier returns")
}

// startBus starts the router's own system bus and waits for its socket.
func (r *daemonRouter) startBus() {
	r.t.Helper()
	r.start("dbus-daemon", "dbus-daemon", "--system", "--nofork", "--nopidfile")
	eventually(r.t, 30*time.Second, r.ns.name+": the system bus", func() string {
		if _, err := os.Stat(filepath.Join(r.dir, "run_dbus", "system_bus_socket")); err != nil {
			return err.Error()
		}
		return ""
	}, r)
}

// TestEventuallyRetriesAFailedCommand: a command that fails while
// eventually polls (a dump interrupted by links going away, a link not
// made yet) is the condition's complaint for that round, not the test's
// failure, and not the failure of the parent test whose namespace it is.
func TestEventuallyRetriesAFailedCommand(t *testing.T) {
	ns := newNS(t)
	r := &daemonRouter{t: t, ns: ns, dir: t.TempDir()}
	go func() {
		time.Sleep(time.Second)
		exec.Command("ip", "-n", ns.name, "link", "add", "late", "type", "dummy").Run()
	}()
	t.Run("poll", func(t *testing.T) {
		rounds := 0
		eventually(t, 30*time.Second, "the late link", func() string {
			rounds++
			ns.ip("link", "show", "late")
			return ""
		}, r)
		if rounds < 2 {
			t.Errorf("the link was there at the first round (%d): the test proves nothing", rounds)
		}
	})
}
