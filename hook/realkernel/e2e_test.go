//go:build realkernel

package realkernel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// twoSites is the seed's topology. Each router's eth1 reaches the other
// only through an "internet" namespace that routes unicast and nothing
// else; behind each router a LAN host.
//
//	h1 (192.168.1.10) -- r1 eth1 198.51.100.1 -- inet -- 203.0.113.1 eth1 r2 -- h2 (192.168.2.10)
type twoSites struct {
	t                *testing.T
	inet, r1, r2     *netns
	h1, h2           *netns
	dir              string
	r1cfg, r2cfg     string
	r1ifs, r2ifs     string
	r1state, r2state string
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "configs", "site1.toml")); err != nil {
		t.Fatalf("cannot find configs/: %v", err)
	}
	return root
}

// veth joins a to b with a veth pair named an (in a) and bn (in b).
func veth(t *testing.T, a *netns, an string, b *netns, bn string) {
	t.Helper()
	tmpA, tmpB := "v"+a.name, "v"+b.name+"x"
	mustRun(t, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	mustRun(t, "ip", "link", "set", tmpA, "netns", a.name, "name", an)
	mustRun(t, "ip", "link", "set", tmpB, "netns", b.name, "name", bn)
}

// newTwoSites builds the topology. The routers' eth1 is left unconfigured
// for ifupdown to bring up; hooks says how ifupdown calls gre-hook.
func newTwoSites(t *testing.T, r1cfg, r2cfg string, hooks bool) *twoSites {
	s := &twoSites{t: t, inet: newNS(t), r1: newNS(t), r2: newNS(t), h1: newNS(t), h2: newNS(t), dir: t.TempDir(), r1cfg: r1cfg, r2cfg: r2cfg}
	os.Chmod(s.dir, 0o755)
	veth(t, s.r1, "eth1", s.inet, "to-r1")
	veth(t, s.r2, "eth1", s.inet, "to-r2")
	veth(t, s.r1, "eth0", s.h1, "eth0")
	veth(t, s.r2, "eth0", s.h2, "eth0")

	s.inet.ip("addr", "add", "198.51.100.254/24", "dev", "to-r1")
	s.inet.ip("addr", "add", "203.0.113.254/24", "dev", "to-r2")
	s.inet.ip("link", "set", "to-r1", "up")
	s.inet.ip("link", "set", "to-r2", "up")
	s.inet.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")

	for i, r := range []*netns{s.r1, s.r2} {
		lan := fmt.Sprintf("192.168.%d.1/24", i+1)
		r.ip("addr", "add", lan, "dev", "eth0")
		r.ip("link", "set", "eth0", "up")
		r.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	for i, h := range []*netns{s.h1, s.h2} {
		h.ip("addr", "add", fmt.Sprintf("192.168.%d.10/24", i+1), "dev", "eth0")
		h.ip("link", "set", "eth0", "up")
		h.ip("route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", i+1))
	}

	write := func(name, addr, gw, cfg string) (ifs, state string) {
		ifs = filepath.Join(s.dir, name+".interfaces")
		state = filepath.Join(s.dir, name+".state")
		os.MkdirAll(state, 0o755)
		var b strings.Builder
		fmt.Fprintf(&b, "iface eth1 inet static\n    address %s/24\n    gateway %s\n", addr, gw)
		if cfg != "" {
			fmt.Fprintf(&b, "    gre-hook-config %s\n", cfg)
		}
		if hooks {
			fmt.Fprintf(&b, "    post-up %s\n    pre-down %s\n", bin, bin)
		}
		if err := os.WriteFile(ifs, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return ifs, state
	}
	s.r1ifs, s.r1state = write("r1", "198.51.100.1", "198.51.100.254", r1cfg)
	s.r2ifs, s.r2state = write("r2", "203.0.113.1", "203.0.113.254", r2cfg)
	return s
}

// ifupdown runs ifup or ifdown for eth1 in router r, as the boot would.
func (s *twoSites) ifupdown(r *netns, verb, ifs, state string) string {
	s.t.Helper()
	out, err := r.try(verb, "-v", "-i", ifs, "--state-dir", state, "eth1")
	if err != nil {
		s.t.Fatalf("%s eth1 in %s: %v\n%s", verb, r.name, err, out)
	}
	return out
}

func (s *twoSites) up() {
	s.t.Helper()
	s.ifupdown(s.r1, "ifup", s.r1ifs, s.r1state)
	s.ifupdown(s.r2, "ifup", s.r2ifs, s.r2state)
}

func (s *twoSites) down() {
	s.t.Helper()
	s.ifupdown(s.r1, "ifdown", s.r1ifs, s.r1state)
	s.ifupdown(s.r2, "ifdown", s.r2ifs, s.r2state)
}

// checkTraffic runs the scenario's packet checks with the tunnel up.
func (s *twoSites) checkTraffic(t *testing.T) {
	t.Run("ping LAN to LAN through the tunnel", func(t *testing.T) {
		out, err := s.h1.try("ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.2.10")
		if err != nil {
			t.Fatalf("ping h1 -> h2 failed: %v\n%s", err, out)
		}
		// The path must be the tunnel: the internet namespace has no
		// route to the LANs, so the ping could not have gone any other way.
		if _, err := s.inet.try("ip", "route", "get", "192.168.2.10"); err == nil {
			if out := s.inet.ip("route", "show", "192.168.2.0/24"); strings.TrimSpace(out) != "" {
				t.Fatalf("the internet namespace routes the LAN directly: %s", out)
			}
		}
		// And the routers' tunnel counters saw it.
		stats := s.r1.ip("-s", "link", "show", "gre-site2")
		if !regexp.MustCompile(`TX:.*\n\s+[1-9]\d*\s+[1-9]`).MatchString(stats) {
			t.Errorf("gre-site2 sent nothing:\n%s", stats)
		}
	})

	t.Run("multicast crosses the tunnel", func(t *testing.T) {
		// The internet namespace does not route multicast: a group packet
		// sent out of r1's uplink goes nowhere. Sent into the tunnel, it
		// must arrive on r2's tunnel, where a listener has joined the group.
		recv := exec.Command("ip", "netns", "exec", s.r2.name, "socat", "-u",
			"UDP4-RECV:5004,ip-add-membership=239.1.2.3:gre-site1,reuseaddr", "STDOUT")
		var got strings.Builder
		recv.Stdout = &got
		if err := recv.Start(); err != nil {
			t.Fatal(err)
		}
		defer recv.Process.Kill()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(got.String(), "hello-site2") {
			s.r1.try("sh", "-c", "echo hello-site2 | socat -u STDIN UDP4-DATAGRAM:239.1.2.3:5004,ip-multicast-if=10.0.0.1,ip-multicast-ttl=4")
			time.Sleep(300 * time.Millisecond)
		}
		recv.Process.Kill()
		recv.Wait()
		if !strings.Contains(got.String(), "hello-site2") {
			t.Fatalf("no multicast datagram arrived on gre-site1 (got %q)", got.String())
		}
	})

	t.Run("SYN MSS clamped on the far LAN", func(t *testing.T) {
		cap := exec.Command("ip", "netns", "exec", s.h2.name, "tcpdump", "-l", "-n", "-v", "-c", "1", "-i", "eth0",
			"tcp[tcpflags] & tcp-syn != 0 and dst port 5001")
		var out strings.Builder
		cap.Stdout = &out
		cap.Stderr = &out
		if err := cap.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cap.Wait(); close(done) }()
		time.Sleep(1 * time.Second) // let tcpdump attach
		for i := 0; i < 5; i++ {
			s.h1.try("socat", "-u", "/dev/null", "TCP4:192.168.2.10:5001,connect-timeout=1")
			select {
			case <-done:
			case <-time.After(500 * time.Millisecond):
				continue
			}
			break
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cap.Process.Kill()
			<-done
		}
		m := regexp.MustCompile(`mss (\d+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no SYN seen on h2's LAN:\n%s", out.String())
		}
		if m[1] != "1436" {
			t.Fatalf("SYN MSS on the far LAN is %s, want 1436 (1476 tunnel MTU - 40)\n%s", m[1], out.String())
		}
	})
}

func (s *twoSites) checkClean(t *testing.T) {
	t.Run("nothing left after ifdown", func(t *testing.T) {
		s.r1.assertClean()
		s.r2.assertClean()
		for _, r := range []*netns{s.r1, s.r2} {
			if _, err := r.try("ip", "link", "show", "eth1"); err != nil {
				t.Errorf("%s lost its eth1", r.name)
			}
		}
	})
}

// TestTwoSitesThroughIfupdown is the seed's scenario, driven by the real
// ifupdown with post-up and pre-down lines and the example configs as they
// are in configs/.
func TestTwoSitesThroughIfupdown(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	s := newTwoSites(t, filepath.Join(root, "configs", "site1.toml"), filepath.Join(root, "configs", "site2.toml"), true)
	for cycle := 1; cycle <= 2; cycle++ {
		t.Run(fmt.Sprintf("cycle %d", cycle), func(t *testing.T) {
			s.up()
			s.checkTraffic(t)
			s.down()
			s.checkClean(t)
		})
	}
}
