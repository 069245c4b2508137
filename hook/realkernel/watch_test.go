//go:build realkernel

package realkernel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests of gre-hook watch: keepalives sent by the binary, failover and
// recovery, both ends watching, and the watcher following ifup/ifdown.

// lockedBuf collects a process's output while it runs, and when each
// piece of it came.
type lockedBuf struct {
	mu    sync.Mutex
	b     bytes.Buffer
	marks []logMark
}

// logMark is where in the buffer a write began, and when.
type logMark struct {
	at  time.Time
	off int
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks = append(l.marks, logMark{time.Now(), l.b.Len()})
	return l.b.Write(p)
}

// since is what was written at t or later.
func (l *lockedBuf) since(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.marks {
		if !m.at.Before(t) {
			return l.b.String()[m.off:]
		}
	}
	return ""
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watchProc is a `gre-hook watch` running in a namespace.
type watchProc struct {
	t    *testing.T
	ns   *netns
	cmd  *exec.Cmd
	log  *lockedBuf
	done chan struct{}
	// killed: the test sent SIGKILL (kill), so no clean exit is due.
	killed bool
}

// kill sends SIGKILL and waits for the process to go.
func (w *watchProc) kill() {
	w.killed = true
	w.cmd.Process.Kill()
	<-w.done
}

// startWatch runs `gre-hook watch --config cfg -v` in n until the test
// ends; then it must stop on SIGTERM with exit status 0.
func startWatch(t *testing.T, n *netns, cfg string) *watchProc {
	t.Helper()
	w := &watchProc{t: t, ns: n, log: &lockedBuf{}, done: make(chan struct{})}
	w.cmd = exec.Command("ip", "netns", "exec", n.name, bin, "watch", "--config", cfg, "-v")
	w.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("starting gre-hook watch: %v", err)
	}
	go func() { w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		if code := w.stop(); code != 0 && !w.killed {
			t.Errorf("gre-hook watch in %s exited %d on SIGTERM, want 0; its log:\n%s", n.name, code, w.log.String())
		}
		t.Logf("gre-hook watch in %s logged:\n%s", n.name, w.log.String())
	})
	return w
}

// stop sends SIGTERM and returns the exit status (-1: killed after 10s).
func (w *watchProc) stop() int {
	select {
	case <-w.done:
	default:
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			w.cmd.Process.Kill()
			<-w.done
			return -1
		}
	}
	return w.cmd.ProcessState.ExitCode()
}

// waitLog waits until the log holds want n times, or fails the test.
func (w *watchProc) waitLog(want string, n int, within time.Duration) {
	w.t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if strings.Count(w.log.String(), want) >= n {
			return
		}
	}
	w.t.Fatalf("after %v the watcher in %s has not logged %q %d time(s):\n%s", within, w.ns.name, want, n, w.log.String())
}

// livenessEntry is one tunnel of the liveness file, read with no help from
// the package that writes it.
type livenessEntry struct {
	Underlay  string     `json:"underlay"`
	Tunnel    string     `json:"tunnel"`
	Remote    string     `json:"remote"`
	Alive     bool       `json:"alive"`
	LastReply *time.Time `json:"last_reply"`
	DeadSince *time.Time `json:"dead_since"`
}

func (n *netns) liveness() []livenessEntry {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.stateDir(), "liveness"))
	if err != nil {
		return nil
	}
	var f struct {
		Tunnels []livenessEntry `json:"tunnels"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		n.t.Fatalf("the liveness file: %v\n%s", err, b)
	}
	return f.Tunnels
}

// kaConfig is site1's tunnel with keepalives every second, dead after 3.
func kaConfig(name, local, remote, addr, lan string, extra string) string {
	return fmt.Sprintf(`[[tunnel]]
name = %q
underlay = "eth1"
mode = "gre"
local = %q
remote = %q
ttl = 255
address = [%q]
keepalive = { interval = 1, retries = 3 }
%s
[[tunnel.route]]
to = %q
`, name, local, remote, addr, extra, lan)
}

// underlaysByHand gives both routers their underlay address and a default
// route via the internet, as ifup would.
func underlaysByHand(s *twoSites) {
	for _, r := range []struct {
		ns       *netns
		addr, gw string
	}{{s.r1, "198.51.100.1/24", "198.51.100.254"}, {s.r2, "203.0.113.1/24", "203.0.113.254"}} {
		r.ns.ip("addr", "add", r.addr, "dev", "eth1")
		r.ns.ip("link", "set", "eth1", "up")
		r.ns.ip("route", "add", "default", "via", r.gw, "dev", "eth1", "proto", "static")
	}
}

// routesVia lists r's IPv4 routes in the main table through dev.
func (n *netns) routesVia(dev string) []string {
	n.t.Helper()
	var out []string
	for _, r := range n.routes("-4") {
		if strings.Contains(r, " dev "+dev+" ") && strings.HasSuffix(r, " table main") && !strings.HasPrefix(r, "10.0.0.0/30 ") {
			out = append(out, r)
		}
	}
	return out
}

// TestWatchPlainPeerFailover: site1 runs gre-hook with a keepalive and a
// default_route tunnel to site2, whose tunnel is made by the seed's own ip
// commands plus the reflection settings. The keepalives on the wire are
// Cisco's format and get answered. Then the path is cut: the tunnel's
// routes must go and the main table's default carry site1's traffic; and
// restored: the routes come back and LAN-to-LAN ping works.
func TestWatchPlainPeerFailover(t *testing.T) {
	t.Parallel()
	const interval, retries = time.Second, 3
	s := plainPeerSites(t)
	s.r2.ip("route", "add", "192.168.1.0/24", "via", "10.0.0.1")
	// Something beyond the internet router for site1 to reach through the
	// default route it falls back to.
	s.inet.ip("addr", "add", "192.0.2.99/32", "dev", "lo")

	cfg := writeConfig(t, kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "default_route = true"))
	s.r1 = withCleanState(s.r1)
	s.r1.up(cfg, "eth1")
	s.r1.assertDefault("after up", origDefault)
	routesOf := func() []string {
		rs := s.r1.routesVia("gre-site2")
		if tr := s.r1.tableRoutes(); tr != "" {
			rs = append(rs, tr)
		}
		return rs
	}
	tunnelRoutes := routesOf()
	if len(tunnelRoutes) != 2 {
		t.Fatalf("after up, routes via gre-site2: %q, want the LAN route and the default route in table 18247", tunnelRoutes)
	}

	stop := capture(t, s.inet, "to-r2")
	w := startWatch(t, s.r1, cfg)
	w.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
	frames := stop(func(frames [][]byte) bool {
		kas, _ := greOnWire(frames, kaSite1, kaSite2)
		replies, _ := greOnWire(frames, kaSite2, kaSite1)
		return len(kas) >= 2 && len(replies) >= 2
	})
	t.Run("keepalives on the wire", func(t *testing.T) { checkKeepaliveOnWire(t, frames, kaSite1, kaSite2) })
	var alive bool
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !alive; time.Sleep(200 * time.Millisecond) {
		l := s.r1.liveness()
		alive = len(l) == 1 && l[0].Alive && l[0].LastReply != nil && time.Since(*l[0].LastReply) < 3*interval
	}
	if !alive {
		t.Fatalf("the liveness file does not show a recent reply: %+v", s.r1.liveness())
	}
	s.checkLANPing(t)

	// Cut the path on the router between the sites. The watcher's
	// decision (its log line) and the routes' going are timed apart: the
	// second adds a run of up, which under a loaded TCG VM takes seconds.
	cutAt := time.Now()
	s.inet.ip("link", "set", "to-r2", "down")
	deadAt, goneAt := w.until(cutAt, "gre-site2: peer 203.0.113.1 dead: no reply for ", func() bool { return len(routesOf()) == 0 })
	s.r1.assertDefault("after the peer died", origDefault)
	if out, err := s.r1.try("ping", "-c", "2", "-i", "0.3", "-W", "2", "192.0.2.99"); err != nil {
		t.Errorf("site1 cannot reach past the internet router through the default route it fell back to: %v\n%s", err, out)
	}
	if l := s.r1.liveness(); len(l) != 1 || l[0].Alive || l[0].DeadSince == nil {
		t.Errorf("the liveness file after the peer died: %+v", l)
	}

	// Restore it mid-interval.
	time.Sleep(interval / 2)
	restoreAt := time.Now()
	s.inet.ip("link", "set", "to-r2", "up")
	aliveAt, backAt := w.until(restoreAt, "gre-site2: peer 203.0.113.1 alive again after ", func() bool {
		return len(routesOf()) == len(tunnelRoutes)
	})
	s.r1.assertDefault("after the peer came back", origDefault)
	s.checkLANPing(t)

	bound := interval*(retries+1) + time.Second
	t.Logf("interval %v, retries %d: after the cut, dead in %.2fs and routes gone in %.2fs (bound %v); after the restore, alive in %.2fs and routes back in %.2fs (bound %v)",
		interval, retries, deadAt.Sub(cutAt).Seconds(), goneAt.Sub(cutAt).Seconds(), bound,
		aliveAt.Sub(restoreAt).Seconds(), backAt.Sub(restoreAt).Seconds(), 2*interval)
	// The watcher's decisions get 4s of slack for the shared TCG VM; the
	// route changes, made by a run of up, 20s more (17.8 s was seen with
	// the guest's CPUs saturated).
	for _, c := range []struct {
		what      string
		took, max time.Duration
	}{
		{"dead after the cut", deadAt.Sub(cutAt), bound + 4*time.Second},
		{"routes gone after the cut", goneAt.Sub(cutAt), bound + 24*time.Second},
		{"alive after the restore", aliveAt.Sub(restoreAt), 2*interval + 4*time.Second},
		{"routes back after the restore", backAt.Sub(restoreAt), 2*interval + 24*time.Second},
	} {
		if c.took > c.max {
			t.Errorf("%s: %v, want within %v", c.what, c.took, c.max)
		}
	}
	if d := deadAt.Sub(cutAt); d < (retries-1)*interval {
		t.Errorf("dead %v after the cut: faster than %d intervals, so not by the keepalives", d, retries-1)
	}
}

// plainPeerSites is the two sites with their underlays up and site2 a
// plain peer: its tunnel made by the seed's commands, and the three
// settings a Linux router needs to reflect keepalives.
func plainPeerSites(t *testing.T) *twoSites {
	t.Helper()
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	s.r2.ip("tunnel", "add", "gre-site1", "mode", "gre", "remote", "198.51.100.1", "local", "203.0.113.1", "ttl", "255")
	s.r2.ip("link", "set", "gre-site1", "up")
	s.r2.ip("addr", "add", "10.0.0.2/30", "dev", "gre-site1")
	reflectKeepalives(s.r2, "gre-site1")
	return s
}

// until polls, from since for at most 30s, for the log line and for cond,
// and returns when each was first seen.
func (w *watchProc) until(since time.Time, line string, cond func() bool) (logged, held time.Time) {
	w.t.Helper()
	// The log is polled on its own, finely: cond runs ip, which in a
	// loaded TCG VM takes long enough to blur the time of the line. Only
	// what was logged from since on counts: the caller's ip command may
	// take long enough that the line comes before this call.
	seen := make(chan time.Time, 1)
	go func() {
		for time.Since(since) < 30*time.Second {
			if strings.Contains(w.log.since(since), line) {
				seen <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		seen <- time.Time{}
	}()
	for time.Since(since) < 30*time.Second && held.IsZero() {
		if cond() {
			held = time.Now()
		}
		// cond runs ip: a finer poll would take the CPU from what it
		// waits for.
		time.Sleep(200 * time.Millisecond)
	}
	logged = <-seen
	if logged.IsZero() || held.IsZero() {
		w.t.Fatalf("30s on: logged %q at %v, routes as expected at %v\nwatcher log:\n%s", line, logged, held, w.log.String())
	}
	return logged, held
}

// withCleanState empties the namespace's state directory now and at the end.
func withCleanState(n *netns) *netns {
	dir := n.stateDir()
	os.RemoveAll(dir)
	n.t.Cleanup(func() { os.RemoveAll(dir) })
	return n
}

// checkLANPing pings h2 from h1 through the tunnel.
func (s *twoSites) checkLANPing(t *testing.T) {
	t.Helper()
	var out string
	var err error
	for i := 0; i < 5; i++ {
		if out, err = s.h1.try("ping", "-c", "2", "-i", "0.3", "-W", "2", "192.168.2.10"); err == nil {
			return
		}
	}
	t.Fatalf("ping h1 -> h2 failed: %v\n%s", err, out)
}

// TestWatchBothEnds: both routers run gre-hook with keepalive and gre-hook
// watch; each reflects the other's keepalives and neither calls the other
// dead over 30s.
func TestWatchBothEnds(t *testing.T) {
	t.Parallel()
	s := newTwoSites(t, "", "", false)
	underlaysByHand(s)
	cfgs := []string{
		writeConfig(t, kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "")),
		writeConfig(t, kaConfig("gre-site1", "203.0.113.1", "198.51.100.1", "10.0.0.2/30", "192.168.1.0/24", "")),
	}
	var ws []*watchProc
	for i, r := range []*netns{s.r1, s.r2} {
		withCleanState(r).up(cfgs[i], "eth1")
		// Until up sets the reflection sysctls itself (branch kasetup).
		reflectKeepalives(r, []string{"gre-site2", "gre-site1"}[i])
	}
	for i, r := range []*netns{s.r1, s.r2} {
		ws = append(ws, startWatch(t, r, cfgs[i]))
	}
	ws[0].waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
	ws[1].waitLog("gre-site1: watching peer 198.51.100.1", 1, 10*time.Second)
	time.Sleep(30 * time.Second)
	for i, r := range []*netns{s.r1, s.r2} {
		if strings.Contains(ws[i].log.String(), " dead: ") {
			t.Errorf("%s's watcher called its peer dead:\n%s", r.name, ws[i].log.String())
		}
		l := r.liveness()
		// The watcher refreshes a peer that keeps answering every 10s.
		if len(l) != 1 || !l[0].Alive || l[0].LastReply == nil || time.Since(*l[0].LastReply) > 13*time.Second {
			t.Errorf("%s's the liveness file after 30s: %+v", r.name, l)
		}
	}
	s.checkLANPing(t)
}

// TestWatchFollowsIfupdown: a watcher started before the underlay is up
// watches nothing, starts on the tunnel when ifup brings it up, drops it at
// ifdown and takes it up again at the next ifup.
func TestWatchFollowsIfupdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfg1 := filepath.Join(dir, "site1.toml")
	cfg2 := filepath.Join(dir, "site2.toml")
	os.WriteFile(cfg1, []byte(kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "")), 0o644)
	os.WriteFile(cfg2, []byte(kaConfig("gre-site1", "203.0.113.1", "198.51.100.1", "10.0.0.2/30", "192.168.1.0/24", "")), 0o644)
	s := newTwoSites(t, cfg1, cfg2, true)
	withCleanState(s.r1)
	withCleanState(s.r2)
	// r2 comes up after r1 and must reflect at once: its new tunnel
	// takes the reflection settings from conf.default (until up sets
	// them itself, branch kasetup).
	s.r2.exec("sysctl", "-qw", "net.ipv4.conf.default.accept_local=1", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.all.rp_filter=0")
	w := startWatch(t, s.r1, cfg1)
	time.Sleep(time.Second)
	if strings.Contains(w.log.String(), "watching peer") {
		t.Fatalf("watching a tunnel before any ifup:\n%s", w.log.String())
	}
	for cycle := 1; cycle <= 2; cycle++ {
		s.ifupdown(s.r2, "ifup", s.r2ifs, s.r2state)
		s.ifupdown(s.r1, "ifup", s.r1ifs, s.r1state)
		w.waitLog("gre-site2: watching peer 203.0.113.1", cycle, 10*time.Second)
		var alive bool
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !alive; time.Sleep(200 * time.Millisecond) {
			l := s.r1.liveness()
			alive = len(l) == 1 && l[0].Alive && l[0].LastReply != nil && time.Since(*l[0].LastReply) < 3*time.Second
		}
		if !alive {
			t.Fatalf("cycle %d: the liveness file shows no recent reply: %+v\n%s", cycle, s.r1.liveness(), w.log.String())
		}
		s.ifupdown(s.r1, "ifdown", s.r1ifs, s.r1state)
		s.ifupdown(s.r2, "ifdown", s.r2ifs, s.r2state)
		w.waitLog("gre-site2: no longer watching peer 203.0.113.1", cycle, 10*time.Second)
		if l := s.r1.liveness(); len(l) != 0 {
			t.Errorf("cycle %d: the liveness file after ifdown: %+v", cycle, l)
		}
	}
	if strings.Contains(w.log.String(), " dead: ") {
		t.Errorf("the watcher called a peer dead:\n%s", w.log.String())
	}
}

// procUsage reads a process's CPU time (user + system) and resident set
// from /proc.
func procUsage(t *testing.T, pid int) (cpu time.Duration, rssKB, hwmKB int) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15 (in clock ticks of 1/100 s).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	kb := statusKB(t, pid)
	rssKB, hwmKB = kb["VmRSS"], kb["VmHWM"]
	return time.Duration(ut+st) * 10 * time.Millisecond, rssKB, hwmKB
}

// statusKB reads the sizes in /proc/PID/status, in kB, by name.
func statusKB(t *testing.T, pid int) map[string]int {
	t.Helper()
	return procKB(t, pid, "status")
}

// smapsKB is the process's memory mappings summed (smaps_rollup), in kB.
func smapsKB(t *testing.T, pid int) map[string]int {
	t.Helper()
	return procKB(t, pid, "smaps_rollup")
}

// procKB reads the "Name: N kB" lines of a file of /proc/PID.
func procKB(t *testing.T, pid int, file string) map[string]int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	kb := map[string]int{}
	for _, l := range strings.Split(string(status), "\n") {
		if name, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(v, " kB") {
			var n int
			fmt.Sscan(v, &n)
			kb[name] = n
		}
	}
	return kb
}

// TestWatchFootprint measures the watcher: CPU with nothing to watch, and
// RSS and CPU with 100 tunnels sending a keepalive every second, all
// answered by a peer with 100 plain tunnels told apart by their keys. Each
// window lasts GRE_HOOK_WATCH_BENCH_SECONDS (default 10; scripts/bench sets
// its BENCH_WATCH_SECONDS). The goal: RSS under 10 MB, idle CPU near 0%.
func TestWatchFootprint(t *testing.T) {
	const n = 100
	window := 10 * time.Second
	if v := os.Getenv("GRE_HOOK_WATCH_BENCH_SECONDS"); v != "" {
		var s int
		fmt.Sscan(v, &s)
		window = time.Duration(s) * time.Second
	}
	r1, r2 := withCleanState(newNS(t)), newNS(t)
	veth(t, r1, "eth1", r2, "eth1")
	r1.ip("addr", "add", "198.51.100.1/24", "dev", "eth1")
	r1.ip("link", "set", "eth1", "up")
	r2.ip("addr", "add", "198.51.100.2/24", "dev", "eth1")
	r2.ip("link", "set", "eth1", "up")
	var cfg, batch strings.Builder
	sysctls := []string{"-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("gka%d", i)
		a, b := 4*i/256, 4*i%256
		fmt.Fprintf(&cfg, "[[tunnel]]\nname = %q\nunderlay = \"eth1\"\nmode = \"gre\"\nlocal = \"198.51.100.1\"\nremote = \"198.51.100.2\"\n"+
			"key = %d\naddress = [\"10.1.%d.%d/30\"]\nmss = \"off\"\nkeepalive = { interval = 1, retries = 3 }\n\n", name, i+1, a, b+1)
		fmt.Fprintf(&batch, "tunnel add %s mode gre local 198.51.100.2 remote 198.51.100.1 key %d ttl 255\nlink set %s up\naddr add 10.1.%d.%d/30 dev %s\n",
			name, i+1, name, a, b+2, name)
		sysctls = append(sysctls, "net.ipv4.conf."+name+".accept_local=1", "net.ipv4.conf."+name+".rp_filter=0")
	}
	bf := filepath.Join(t.TempDir(), "batch")
	os.WriteFile(bf, []byte(batch.String()), 0o644)
	r2.ip("-batch", bf)
	r2.exec("sysctl", sysctls...)
	path := writeConfig(t, cfg.String())

	w := startWatch(t, r1, path)
	pid := w.cmd.Process.Pid
	// Let it settle: its start (config, records, links) is not what the
	// idle window measures, and on a loaded emulated CPU it took longer
	// than a fixed 2 s (6.4% "idle" CPU in CI4).
	w.waitLog("watching 0 tunnel(s)", 1, 60*time.Second)
	time.Sleep(2 * time.Second)
	c0, _, _ := procUsage(t, pid)
	time.Sleep(window)
	c1, idleRSS, _ := procUsage(t, pid)
	idleCPU := float64(c1-c0) / float64(window) * 100

	r1.up(path, "eth1")
	w.waitLog("watching peer 198.51.100.2", n, 60*time.Second)
	allAlive := func() bool {
		l := r1.liveness()
		if len(l) != n {
			return false
		}
		for _, e := range l {
			// Refreshed every 10s while the peer answers.
			if !e.Alive || e.LastReply == nil || time.Since(*e.LastReply) > 13*time.Second {
				return false
			}
		}
		return true
	}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && !allAlive(); time.Sleep(200 * time.Millisecond) {
	}
	if !allAlive() {
		t.Fatalf("not all %d tunnels show a recent reply: %+v", n, r1.liveness())
	}
	c2, _, _ := procUsage(t, pid)
	time.Sleep(window)
	c3, rss, hwm := procUsage(t, pid)
	// Resident memory of its own (heap, stacks), and of the binary's pages.
	kb := statusKB(t, pid)
	anon, file := kb["RssAnon"], kb["RssFile"]
	activeCPU := float64(c3-c2) / float64(window) * 100
	if !allAlive() || strings.Contains(w.log.String(), " dead: ") {
		t.Errorf("a tunnel went dead or silent during the window:\n%s", w.log.String())
	}
	t.Logf("gre-hook watch over %v windows: nothing to watch: CPU %.2f%%, RSS %d kB; %d tunnels, a keepalive each every second, all answered: CPU %.2f%%, RSS %d kB (peak %d kB)",
		window, idleCPU, idleRSS, n, activeCPU, rss, hwm)
	fmt.Printf("WATCH-BENCH window=%ds idle_cpu_pct=%.2f idle_rss_kb=%d tunnels=%d active_cpu_pct=%.2f rss_kb=%d peak_rss_kb=%d rss_anon_kb=%d rss_file_kb=%d\n",
		int(window/time.Second), idleCPU, idleRSS, n, activeCPU, rss, hwm, anon, file)
	// Regression guards, not the goals (RSS under 10 MB, idle
	// CPU near 0), which the emulated VM does not show: see scripts/README.md (Benchmark).
	if idleCPU > 5 {
		t.Errorf("CPU %.2f%% with nothing to watch, want near 0", idleCPU)
	}
	// Debian's kernels back anonymous memory with 2 MB pages
	// (transparent_hugepage=always): one such page is more than the
	// watcher's heap, so it asks for none. (scripts/bench runs this test
	// on a binary from before that, too.)
	if os.Getenv("GRE_HOOK_WATCH_BENCH_BASE") == "" {
		if huge := smapsKB(t, pid)["AnonHugePages"]; huge != 0 {
			t.Errorf("the watcher has %d kB of transparent huge pages, want none", huge)
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if !strings.Contains(string(status), "\nTHP_enabled:\t0\n") {
			t.Errorf("the watcher may have transparent huge pages (want THP_enabled 0):\n%s", status)
		}
	}
	if hwm > 24*1024 {
		t.Errorf("peak RSS %d kB with %d tunnels, want under 24 MB (the goal is 10)", hwm, n)
	}
	r1.down(path, "eth1")
}
