//go:build realkernel

package realkernel

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/gre-hook/gre-hook/hook"
	"github.com/gre-hook/gre-hook/hook/internal/fixture"
	"github.com/gre-hook/gre-hook/hook/localaddr"
	"github.com/gre-hook/gre-hook/hook/rtnl"
	"github.com/gre-hook/gre-hook/hook/state"
)

// etcNetns writes /etc/netns/NAME/FILE, which `ip netns exec NAME`
// bind-mounts over /etc/FILE for the command it runs.
func etcNetns(t *testing.T, n *netns, file, body string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// openIn opens gre-hook's netlink handle inside namespace n, from a
// thread that goes back to the test's namespace afterwards: the sockets
// stay in n.
func openIn(t *testing.T, n *netns) *rtnl.Handle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		t.Fatal(err)
	}
	h, err := rtnl.Open()
	if err2 := vnetns.Set(orig); err2 != nil {
		t.Fatalf("back to the test's namespace: %v", err2)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func (n *netns) linkIndex(name string) int {
	n.t.Helper()
	var ls []struct {
		Ifindex int `json:"ifindex"`
	}
	if err := json.Unmarshal([]byte(n.ip("-j", "link", "show", "dev", name)), &ls); err != nil || len(ls) != 1 {
		n.t.Fatalf("reading %s's index: %v", name, err)
	}
	return ls[0].Ifindex
}

// silentDNS gives site1 a DNS server that never answers: the internet
// drops what is sent to it, without an ICMP error that would end the wait
// early. A name site1's hosts file lacks then times out.
func silentDNS(t *testing.T, s *twoSites) {
	s.inet.ip("route", "add", "blackhole", "192.0.2.53/32")
	etcNetns(t, s.r1, "resolv.conf", "nameserver 192.0.2.53\n")
}

func pingLANs(t *testing.T, s *twoSites, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if _, err := s.h1.try("ping", "-c", "1", "-W", "1", "192.168.2.10"); err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			out, _ := s.h1.try("ping", "-c", "1", "-W", "1", "192.168.2.10")
			t.Fatalf("LAN-to-LAN ping fails after %s:\n%s\nr1:\n%s\nr2:\n%s", within, out,
				s.r1.ip("-d", "link", "show", "gre-site2"), s.r2.ip("-d", "link", "show", "gre-site1"))
		}
	}
}

// TestDynamicRemote: site1 names its peer as site2.test, from its
// namespace's own /etc/netns/NAME/hosts; DNS is a server the internet
// drops packets to. Then site2 is renumbered, and hook.Engine.Retarget (what
// gre-hook watch calls) moves both tunnels in place.
func TestDynamicRemote(t *testing.T) {
	s := newTwoSites(t, "", "", false)
	for _, r := range []struct {
		ns       *netns
		addr, gw string
	}{{s.r1, "198.51.100.1/24", "198.51.100.254"}, {s.r2, "203.0.113.1/24", "203.0.113.254"}} {
		r.ns.ip("addr", "add", r.addr, "dev", "eth1")
		r.ns.ip("link", "set", "eth1", "up")
		r.ns.ip("route", "add", "default", "via", r.gw)
	}
	silentDNS(t, s)
	etcNetns(t, s.r1, "hosts", "127.0.0.1 localhost\n203.0.113.1 site2.test\n2001:db8::9 v6only.test\n")

	r1body := fixture.Config(fixture.Site2().Without("local").Set("remote", `"site2.test"`)) + `
[[tunnel]]
name = "gre-lost"
underlay = "eth1"
remote = "nowhere.test"
address = ["10.0.9.1/30"]

[[tunnel]]
name = "gre-v6only"
underlay = "eth1"
remote = "v6only.test"
address = ["10.0.8.1/30"]
`
	r1cfg := writeConfig(t, r1body)
	r2cfg := writeConfig(t, fixture.Config(fixture.Site1().Without("local")))
	r1dir, r2dir := filepath.Join(s.dir, "r1run"), filepath.Join(s.dir, "r2run")
	r1env, r2env := []string{"GRE_HOOK_STATE_DIR=" + r1dir}, []string{"GRE_HOOK_STATE_DIR=" + r2dir}

	start := time.Now()
	res := s.r1.must(s.r1.gh(r1env, "--config", r1cfg, "--iface", "eth1", "--phase", "up"))
	took := time.Since(start)
	s.r2.must(s.r2.gh(r2env, "--config", r2cfg, "--iface", "eth1", "--phase", "up"))

	t.Run("a name in /etc/netns/NAME/hosts resolves, and LAN-to-LAN ping works", func(t *testing.T) {
		l, ok := s.r1.link("gre-site2")
		if !ok || l.data("remote") != "203.0.113.1" {
			t.Fatalf("gre-site2: %+v", l)
		}
		pingLANs(t, s, 5*time.Second)
		st := s.r1.gh(r1env, "status", "--config", r1cfg, "--iface", "eth1")
		if !strings.Contains(st.stdout, "gre-site2 on eth1: up, remote site2.test (203.0.113.1)") {
			t.Errorf("status:\n%s%s", st.stdout, st.stderr)
		}
		dry := s.r1.gh(r1env, "up", "--config", r1cfg, "--iface", "eth1", "--dry-run")
		if !strings.Contains(dry.stderr, "# gre-site2: remote site2.test (203.0.113.1)") {
			t.Errorf("dry run:\n%s", dry.stderr)
		}
	})
	t.Run("a name DNS does not answer for costs a few seconds, and the other tunnels come up", func(t *testing.T) {
		// The VM emulates its CPU, and every run is slow there: what the
		// unanswered name costs is the difference from the same run with
		// only the names /etc/hosts has.
		only := writeConfig(t, strings.SplitN(r1body, "[[tunnel]]\nname = \"gre-lost\"", 2)[0])
		t0 := time.Now()
		s.r1.must(s.r1.gh(r1env, "up", "--config", only, "--iface", "eth1", "--dry-run"))
		base := time.Since(t0)
		t0 = time.Now()
		s.r1.must(s.r1.gh(r1env, "up", "--config", r1cfg, "--iface", "eth1", "--dry-run"))
		withLost := time.Since(t0)
		t.Logf("up with an unanswered name took %s; dry runs: %s with it, %s without", took, withLost, base)
		// gre-hook gives a name 3 s; the resolver's own default with
		// this resolv.conf is 5 s a try and 2 tries, 10 s. The bound is
		// between the two, generous for a loaded emulated CPU (6.2 s
		// was seen there with the 3 s cap working).
		if withLost-base > 9*time.Second {
			t.Errorf("the unanswered name cost %s", withLost-base)
		}
		if _, ok := s.r1.link("gre-lost"); ok {
			t.Error("gre-lost exists")
		}
		if !strings.Contains(res.stderr, `tunnel "gre-lost": remote nowhere.test does not resolve (resolving nowhere.test: timed out after 3s)`) {
			t.Errorf("stderr:\n%s", res.stderr)
		}
		st := s.r1.gh(r1env, "status", "--config", r1cfg, "--iface", "eth1", "--json")
		if st.code != 3 || !strings.Contains(st.stdout, `"tunnel": "gre-lost"`) || !strings.Contains(st.stdout, `"state": "unresolved"`) {
			t.Errorf("status exit %d:\n%s%s", st.code, st.stdout, st.stderr)
		}
	})
	t.Run("a name of the wrong family is a clear error", func(t *testing.T) {
		if _, ok := s.r1.link("gre-v6only"); ok {
			t.Error("gre-v6only exists")
		}
		want := `tunnel "gre-v6only": remote v6only.test has no IPv4 address, which mode gre needs (it resolves to 2001:db8::9 only)`
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %s:\n%s", want, res.stderr)
		}
	})

	t.Run("renumbered site2: both tunnels move in place", func(t *testing.T) {
		idx1, idx2 := s.r1.linkIndex("gre-site2"), s.r2.linkIndex("gre-site1")
		h1, h2 := openIn(t, s.r1), openIn(t, s.r2)
		sys1 := &hook.System{Net: h1, Store: state.Store{Dir: r1dir}, LockWait: 5 * time.Second, Log: os.Stderr}
		sys2 := &hook.System{Net: h2, Store: state.Store{Dir: r2dir}, LockWait: 5 * time.Second, Log: os.Stderr}

		// site2's follower of its underlay address, as gre-hook watch runs
		// it, in site2's namespace.
		changes := make(chan localaddr.Change, 4)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ready := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // the thread stays in r2's namespace and is discarded
			target, err := vnetns.GetFromName(s.r2.name)
			if err == nil {
				err = vnetns.Set(target)
			}
			ready <- err
			if err != nil {
				return
			}
			f := localaddr.New()
			f.Follow("eth1", netip.MustParseAddr("203.0.113.1"))
			f.Run(ctx, changes)
		}()
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the subscription

		start := time.Now()
		s.r2.ip("addr", "del", "203.0.113.1/24", "dev", "eth1")
		s.r2.ip("addr", "add", "203.0.113.9/24", "dev", "eth1")
		s.r2.ip("route", "replace", "default", "via", "203.0.113.254")
		etcNetns(t, s.r1, "hosts", "127.0.0.1 localhost\n203.0.113.9 site2.test\n")

		var c localaddr.Change
		select {
		case c = <-changes:
		case <-time.After(5 * time.Second):
			t.Fatal("no address change reported for site2's eth1")
		}
		if c != (localaddr.Change{Underlay: "eth1", Family: 4, Old: netip.MustParseAddr("203.0.113.1"), New: netip.MustParseAddr("203.0.113.9")}) {
			t.Fatalf("change: %+v", c)
		}
		var log bytes.Buffer
		sys1.Log, sys2.Log = &log, &log
		if err := hook.NewEngine(sys2).Retarget(context.Background(), "eth1", "gre-site1", c.New, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if err := hook.NewEngine(sys1).Retarget(context.Background(), "eth1", "gre-site2", netip.Addr{}, netip.MustParseAddr("203.0.113.9")); err != nil {
			t.Fatal(err)
		}
		t.Logf("retarget log:\n%s", log.String())
		if n := strings.Count(log.String(), "\n"); n != 2 {
			t.Errorf("%d lines logged for two moves", n)
		}
		took := pingLANs(t, s, 10*time.Second)
		t.Logf("LAN-to-LAN ping back %s after the renumbering", time.Since(start))
		_ = took
		if i := s.r1.linkIndex("gre-site2"); i != idx1 {
			t.Errorf("gre-site2 was re-created: index %d -> %d", idx1, i)
		}
		if i := s.r2.linkIndex("gre-site1"); i != idx2 {
			t.Errorf("gre-site1 was re-created: index %d -> %d", idx2, i)
		}
		l1, _ := s.r1.link("gre-site2")
		l2, _ := s.r2.link("gre-site1")
		if l1.data("remote") != "203.0.113.9" || l2.data("local") != "203.0.113.9" || l1.data("ttl") != "255" || l2.data("ttl") != "255" {
			t.Errorf("links: r1 %+v\nr2 %+v", l1, l2)
		}
		if l1.Mtu != 1476 || l2.Mtu != 1476 {
			t.Errorf("mtu changed: %d %d", l1.Mtu, l2.Mtu)
		}
		// The addresses, routes and MSS rule stayed; an up agrees with it all.
		if r := s.r1.gh(r1env, "--config", r1cfg, "--iface", "eth1", "--phase", "up", "-v"); r.code != 0 || strings.Contains(r.stderr, "+ ") {
			t.Errorf("up after the move changed things (exit %d):\n%s", r.code, r.stderr)
		}
		if r := s.r2.gh(r2env, "--config", r2cfg, "--iface", "eth1", "--phase", "up"); r.code != 0 || strings.Contains(r.stderr, "+ ") {
			t.Errorf("r2 up after the move changed things (exit %d):\n%s", r.code, r.stderr)
		}
		if st := s.r2.gh(r2env, "status", "--config", r2cfg, "--iface", "eth1"); st.code != 0 {
			t.Errorf("r2 status exit %d:\n%s", st.code, st.stdout)
		}
	})
	s.r1.down(r1cfg, "eth1")
	s.r2.down(r2cfg, "eth1")
}

// TestWatchDynamicEndpoints is TestDynamicRemote's scenario with gre-hook watch at
// both ends: site1 names its peer site2.test (its namespace's hosts file,
// resolve_interval = 1) and site2's local is "auto". site2 is renumbered
// and site2.test pointed at the new address; with no other action the
// watchers move both tunnels in place and LAN-to-LAN ping works again.
// Also: a name that resolves only 3s after up (the watcher brings its
// tunnel up), and one of the wrong family. site1 sends keepalives (with
// retries enough never to call the peer dead here), which must follow the
// move.
func TestWatchDynamicEndpoints(t *testing.T) {
	t.Parallel()
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	silentDNS(t, s)
	hosts := "127.0.0.1 localhost\n2001:db8::9 v6only.test\n"
	etcNetns(t, s.r1, "hosts", hosts+"203.0.113.1 site2.test\n")
	r1cfg := writeConfig(t, fixture.Config(fixture.Site2().Without("local").Set("remote", `"site2.test"`).Set("resolve_interval", "1").
		Set("keepalive", "{ interval = 1, retries = 30 }"))+`
[[tunnel]]
name = "gre-late"
underlay = "eth1"
remote = "late.test"
resolve_interval = 1
address = ["10.0.9.1/30"]

[[tunnel]]
name = "gre-v6only"
underlay = "eth1"
remote = "v6only.test"
resolve_interval = 1
address = ["10.0.8.1/30"]
`)
	r2cfg := writeConfig(t, fixture.Config(fixture.Site1().Without("local").Set("keepalive_reflect", "true")))
	withCleanState(s.r1).up(r1cfg, "eth1")
	withCleanState(s.r2).up(r2cfg, "eth1")
	// gre-hook's keepalive_reflect sets the tunnel's own sysctls; only
	// forwarding is the router's.
	s.r2.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	w1, w2 := startWatch(t, s.r1, r1cfg), startWatch(t, s.r2, r2cfg)
	w1.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
	pingLANs(t, s, 10*time.Second)
	// The hosts file is rewritten in place, never removed while the
	// watchers run: ip netns exec bind-mounted that file, and a new one
	// at the path would go unseen.
	setHosts := func(extra string) { etcNetns(t, s.r1, "hosts", hosts+extra) }

	t.Run("a name that resolves 3s after up: the watcher brings the tunnel up", func(t *testing.T) {
		if _, ok := s.r1.link("gre-late"); ok {
			t.Fatal("gre-late exists before late.test resolves")
		}
		time.Sleep(3 * time.Second)
		at := time.Now()
		setHosts("203.0.113.1 site2.test\n203.0.113.50 late.test\n")
		// The link is made down and set up a few steps later: wait for
		// it to be up.
		var l linkInfo
		for ok := false; !ok || !l.has("UP"); time.Sleep(100 * time.Millisecond) {
			if l, ok = s.r1.link("gre-late"); (!ok || !l.has("UP")) && time.Since(at) > 30*time.Second {
				t.Fatalf("gre-late is not up 30s after late.test resolves (%+v); watcher log:\n%s", l, w1.log.String())
			}
		}
		t.Logf("gre-late up %.1fs after late.test was added to the hosts file", time.Since(at).Seconds())
		if l.data("remote") != "203.0.113.50" {
			t.Errorf("gre-late: %+v", l)
		}
		w1.waitLog("gre-late: remote late.test resolves now (203.0.113.50); bringing the tunnel up", 1, 10*time.Second)
		if a := s.r1.ip("-4", "-o", "addr", "show", "dev", "gre-late"); !strings.Contains(a, "10.0.9.1/30") {
			t.Errorf("gre-late's address: %s", a)
		}
		// The link is up before the watcher's up has written the MSS
		// rule and the record (its iptables reads and write are a few
		// processes, seconds each under emulation and load): status may
		// see drift for a moment, never for long.
		want := "gre-late on eth1: up, remote late.test (203.0.113.50)"
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			st := s.r1.gh(nil, "status", "--config", r1cfg, "--iface", "eth1")
			if strings.Contains(st.stdout, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("status 30s after gre-late came up:\n%s%s", st.stdout, st.stderr)
				break
			}
		}
	})
	t.Run("a name of the wrong family: a clear error, once, and no tunnel", func(t *testing.T) {
		line := "gre-v6only: remote v6only.test: v6only.test has no IPv4 address (it resolves to 2001:db8::9 only); the tunnel stays down"
		w1.waitLog(line, 1, 10*time.Second)
		if n := strings.Count(w1.log.String(), line); n != 1 {
			t.Errorf("logged %d times", n)
		}
		if _, ok := s.r1.link("gre-v6only"); ok {
			t.Error("gre-v6only exists")
		}
	})

	t.Run("site2 renumbered: both tunnels move in place, LAN-to-LAN ping works again", func(t *testing.T) {
		idx1, idx2 := s.r1.linkIndex("gre-site2"), s.r2.linkIndex("gre-site1")
		start := time.Now()
		s.r2.ip("addr", "del", "203.0.113.1/24", "dev", "eth1")
		s.r2.ip("addr", "add", "203.0.113.9/24", "dev", "eth1")
		s.r2.ip("route", "replace", "default", "via", "203.0.113.254", "dev", "eth1", "proto", "static")
		s.inet.ip("route", "replace", "203.0.113.9/32", "dev", "to-r2")
		setHosts("203.0.113.9 site2.test\n203.0.113.50 late.test\n")
		took := pingLANs(t, s, 10*time.Second)
		t.Logf("LAN-to-LAN ping works again %.2fs after the renumbering began (%.2fs after its last step)",
			time.Since(start).Seconds(), took.Seconds())
		if i := s.r1.linkIndex("gre-site2"); i != idx1 {
			t.Errorf("gre-site2 was re-created: index %d -> %d", idx1, i)
		}
		if i := s.r2.linkIndex("gre-site1"); i != idx2 {
			t.Errorf("gre-site1 was re-created: index %d -> %d", idx2, i)
		}
		l1, _ := s.r1.link("gre-site2")
		l2, _ := s.r2.link("gre-site1")
		if l1.data("remote") != "203.0.113.9" || l2.data("local") != "203.0.113.9" || l2.data("remote") != "198.51.100.1" {
			t.Errorf("links: r1 %+v\nr2 %+v", l1, l2)
		}
		// One line each: the move, from Retarget.
		for _, c := range []struct {
			w    *watchProc
			line string
		}{
			{w1, "# gre-site2 on eth1, in place, was remote 203.0.113.1 (site2.test)"},
			{w2, "# gre-site1 on eth1, in place, was local 203.0.113.1 remote 198.51.100.1"},
		} {
			if n := strings.Count(c.w.log.String(), c.line); n != 1 {
				t.Errorf("%s's watcher logged %q %d times:\n%s", c.w.ns.name, c.line, n, c.w.log.String())
			}
		}
		// The routes and addresses stayed: an up finds nothing to do.
		for _, r := range []struct {
			ns  *netns
			cfg string
		}{{s.r1, r1cfg}, {s.r2, r2cfg}} {
			if res := r.ns.gh(nil, "--config", r.cfg, "--iface", "eth1", "--phase", "up"); res.code != 0 || strings.Contains(res.stderr, "+ ") {
				t.Errorf("%s: up after the move changed things (exit %d):\n%s", r.ns.name, res.code, res.stderr)
			}
		}
		// The keepalives followed: replies from the new address.
		moved := time.Now()
		var ok bool
		for end := moved.Add(10 * time.Second); time.Now().Before(end) && !ok; time.Sleep(200 * time.Millisecond) {
			for _, e := range s.r1.liveness() {
				ok = ok || e.Tunnel == "gre-site2" && e.Remote == "203.0.113.9" && e.Alive && e.LastReply != nil && e.LastReply.After(moved)
			}
		}
		if !ok {
			t.Errorf("no keepalive reply from 203.0.113.9 in the liveness file: %+v\n%s", s.r1.liveness(), w1.log.String())
		}
	})
	s.r1.down(r1cfg, "eth1")
	s.r2.down(r2cfg, "eth1")
}
