//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gre-hook/gre-hook/hook/internal/fixture"
)

// The [policy] table on the real kernel: custom values in every object
// they name, then a change of all three while the tunnel is up and a
// ping runs through it, which the next up applies.

// policyValues is a [policy] table and what the kernel shows of it.
type policyValues struct {
	table, mark string
	prio        int
}

func (p policyValues) toml() string {
	return fmt.Sprintf("[policy]\ntable = %s\npriority = %d\nfwmark = %s\n\n", p.table, p.prio, p.mark)
}

// checkPolicyValues asserts that the kernel holds gre-site2 under p and
// nothing of gre-hook's under gone: `ip rule`, `ip route show table`, the
// link's fwmark, and the paths, a ping through the tunnel included.
func checkPolicyValues(t *testing.T, s *twoSites, main string, p policyValues, gone *policyValues) {
	t.Helper()
	r1 := s.r1
	rules := strings.Join(r1.ourRules(), "\n")
	want := fmt.Sprintf("-4 %d: from all lookup main suppress_prefixlength 0 proto gre-hook\n-4 %d: not from all fwmark %s lookup %s proto gre-hook", p.prio, p.prio+1, p.mark, p.table)
	if rules != want && rules != strings.ReplaceAll(want, "proto gre-hook", "proto 176") {
		t.Errorf("gre-hook's rules:\n%s\nwant:\n%s", rules, want)
	}
	if got := strings.TrimSpace(r1.ip("-4", "route", "show", "table", p.table)); got != "default via 10.0.0.2 dev gre-site2 proto gre-hook metric 1" && got != "default via 10.0.0.2 dev gre-site2 proto 176 metric 1" {
		t.Errorf("ip route show table %s: %q", p.table, got)
	}
	if d := r1.ip("-d", "link", "show", "gre-site2"); !strings.Contains(d, " fwmark "+p.mark+" ") && !strings.HasSuffix(strings.TrimSpace(d), "fwmark "+p.mark) {
		t.Errorf("the link has not fwmark %s:\n%s", p.mark, d)
	}
	if gone != nil {
		if got := strings.TrimSpace(r1.ip("-4", "route", "show", "table", gone.table)); got != "" {
			t.Errorf("ip route show table %s, the old table: %q", gone.table, got)
		}
		for _, l := range strings.Split(r1.ip("-4", "rule", "show"), "\n") {
			if strings.HasPrefix(l, fmt.Sprintf("%d:", gone.prio)) || strings.HasPrefix(l, fmt.Sprintf("%d:", gone.prio+1)) || strings.Contains(l, "fwmark "+gone.mark+" ") {
				t.Errorf("an old rule is left: %q", l)
			}
		}
	}
	if got := r1.mainDefault(); got != main {
		t.Errorf("the main default is %q, was %q", got, main)
	}
	checkPolicyPathsOf(t, s, "gre-site2", "eth1", "eth1", p.table, p.mark)
}

// TestPolicyRoutingCustomValues: a [policy] table with all three values
// of its own. --dry-run and status show them, up puts them in every
// object (link mark, table, rules), the paths are right and a ping goes
// through the tunnel. Then all three change in the config while the
// tunnel is up, with the watcher running and a ping from the LAN going
// through the tunnel: status says what up would do, and the next up
// moves everything, with no ping lost, the old values gone from the
// kernel, the main default byte for byte as it was, and the watcher's
// keepalives marked with the new fwmark. down leaves nothing.
func TestPolicyRoutingCustomValues(t *testing.T) {
	t.Parallel()
	s := policySites(t)
	s.r1 = withCleanState(s.r1)
	main := s.r1.mainDefault()
	a := policyValues{table: "100", prio: 1000, mark: "0x10"}
	b := policyValues{table: "200", prio: 30000, mark: "0x20"}
	tunnel := kaConfig("gre-site2", "198.51.100.1", "203.0.113.1", "10.0.0.1/30", "192.168.2.0/24", "default_route = true")
	cfg := writeConfig(t, a.toml()+tunnel)

	dry := s.r1.must(s.r1.gh(nil, "--config", cfg, "--iface", "eth1", "--phase", "up", "--dry-run"))
	fixture.MustContain(t, "--dry-run", dry.stderr,
		"# policy routing: table 100, rules at priorities 1000 and 1001, fwmark 0x10\n",
		"ip link set gre-site2 type gre fwmark 0x10\n",
		"ip route replace default via 10.0.0.2 dev gre-site2 table 100 metric 1 proto 176\n",
		"ip rule add priority 1000 lookup main suppress_prefixlength 0 proto 176\n",
		"ip rule add priority 1001 not fwmark 0x10 lookup 100 proto 176\n",
	)
	s.r1.up(cfg, "eth1")
	checkPolicyValues(t, s, main, a, nil)
	st := s.r1.gh(nil, "status", "--config", cfg)
	if st.code != 0 || !strings.Contains(st.stdout, "policy routing: table 100, rules at priorities 1000 and 1001, fwmark 0x10\n") {
		t.Errorf("status: %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	w := startWatch(t, s.r1, cfg)
	w.waitLog("gre-site2: watching peer 203.0.113.1", 1, 10*time.Second)
	w.waitAlive(s.r1, 15*time.Second)
	if on, in := s.r1.keepalivePaths(t); on < 2 || in != 0 {
		t.Errorf("in 10 s, %d GRE packets left by eth1 and %d went into the tunnel: keepalives not marked as the link (%s)", on, in, a.mark)
	}

	// The change, not applied yet: status shows it, and the move.
	if err := os.WriteFile(cfg, []byte(b.toml()+tunnel), 0o644); err != nil {
		t.Fatal(err)
	}
	st = s.r1.gh(nil, "status", "--config", cfg)
	for _, want := range []string{
		"policy routing: table 100, rules at priorities 1000 and 1001, fwmark 0x10\n",
		"  - the config asks for table 200, rules at priorities 30000 and 30001, fwmark 0x20: up on any underlay moves every underlay to it\n",
		"  ip link set gre-site2 type gre fwmark 0x20\n",
	} {
		if st.code != 3 || !strings.Contains(st.stdout, want) {
			t.Errorf("status (exit %d) lacks %q:\n%s%s", st.code, want, st.stdout, st.stderr)
		}
	}
	checkPolicyValues(t, s, main, a, nil)

	// The move, under a ping through the tunnel every 10 ms.
	ping := exec.Command("ip", "netns", "exec", s.h1.name, "ping", "-n", "-q", "-i", "0.01", "-c", "300", "-W", "1", "192.0.2.99")
	var pingOut strings.Builder
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	up := s.r1.up(cfg, "eth1")
	perr := ping.Wait()
	t.Logf("the move:\n%s\nping during it:\n%s", up.stderr, pingOut.String())
	sent, got := pingCounts(pingOut.String())
	if perr != nil || sent == 0 || got != sent {
		t.Errorf("ping through the tunnel during the move: %d sent, %d received (%v)\n%s", sent, got, perr, pingOut.String())
	}
	checkPolicyValues(t, s, main, b, &a)
	if st := s.r1.gh(nil, "status", "--config", cfg); st.code != 0 || !strings.Contains(st.stdout, "policy routing: table 200, rules at priorities 30000 and 30001, fwmark 0x20\n") {
		t.Errorf("status after the move: %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	if r := s.r1.up(cfg, "eth1"); r.stderr != "" {
		t.Errorf("a second up changed things:\n%s", r.stderr)
	}
	// The watcher marks its keepalives as the link does now, and the peer
	// still answers them.
	since := time.Now()
	waitFor(t, 15*time.Second, func() bool {
		for _, e := range s.r1.liveness() {
			if e.Tunnel == "gre-site2" && e.Alive && e.LastReply != nil && e.LastReply.After(since) {
				return true
			}
		}
		return false
	})
	if on, in := s.r1.keepalivePaths(t); on < 2 || in != 0 {
		t.Errorf("after the move, in 10 s, %d GRE packets left by eth1 and %d went into the tunnel: keepalives not marked as the link (%s)", on, in, b.mark)
	}

	s.r1.down(cfg, "eth1")
	s.r1.assertClean()
	if rules := s.r1.ourRules(); len(rules) != 0 {
		t.Errorf("rules left: %q", rules)
	}
	if got := s.r1.mainDefault(); got != main {
		t.Errorf("down changed the main default: %q, was %q", got, main)
	}
}

var pingLine = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

// pingCounts reads ping's summary.
func pingCounts(out string) (sent, received int) {
	if m := pingLine.FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &sent)
		fmt.Sscan(m[2], &received)
	}
	return sent, received
}

// keepalivePaths captures for 10 s the GRE packets that leave by eth1
// and those that go into gre-site2 (4 s once caught none at all on a
// loaded emulated CPU, tcpdump's own start taking most of it). A keepalive whose fwmark is the
// link's leaves by eth1, as the tunnel's own outer packets do; with any
// other mark the rule to gre-hook's table sends it into the tunnel,
// where no GRE packet belongs.
func (n *netns) keepalivePaths(t *testing.T) (onUnderlay, inTunnel int) {
	t.Helper()
	count := func(dev, filter string, out chan<- int) {
		got, _ := n.try("timeout", "10", "tcpdump", "-i", dev, "-nn", "-p", "-l", "-q", filter)
		c := 0
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, " > ") {
				c++
			}
		}
		out <- c
	}
	u, tu := make(chan int), make(chan int)
	go count("eth1", "ip proto 47 and src 198.51.100.1 and dst 203.0.113.1", u)
	go count("gre-site2", "ip proto 47", tu)
	return <-u, <-tu
}
